"""gram_pyro: GRAM (Generative Recursive Reasoning, arXiv 2605.19376) as a Pyro probabilistic program.

Model core only: this package imports no task and no analysis module (see docs/model.md).
"""

from gram_pyro.config import MODES, PRESETS, GRAMConfig, preset
from gram_pyro.elbo import TruncatedBalancedELBO, full_trajectory_elbo
from gram_pyro.inference import Rollouts, lprm_best, majority_vote, prior_rollouts, temperature
from gram_pyro.model import GRAM, Carry
from gram_pyro.priors import PRIORS, TransitionPrior, register_prior

__all__ = [
    "GRAM",
    "Carry",
    "GRAMConfig",
    "MODES",
    "PRESETS",
    "PRIORS",
    "Rollouts",
    "TransitionPrior",
    "TruncatedBalancedELBO",
    "full_trajectory_elbo",
    "lprm_best",
    "majority_vote",
    "preset",
    "prior_rollouts",
    "register_prior",
    "temperature",
]
