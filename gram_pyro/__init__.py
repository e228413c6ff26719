"""gram_pyro: GRAM (Generative Recursive Reasoning, arXiv 2605.19376) as a Pyro probabilistic program.

Model core only: this package imports no task and no analysis module (see docs/model.md).
"""

import importlib

# Public names and the module each lives in.  They are imported on first use (PEP 562), so that ``import
# gram_pyro`` does not load torch: the ``gram`` command can then turn a Ctrl-C during start-up into one line
# (cli/__init__.py; docs/reliability.md, "Hostile input: the rules").
_EXPORTS = {
    "gram_pyro.config": ("MODES", "GRAMConfig", "OptimConfig", "TrainConfig"),
    "gram_pyro.elbo": ("TruncatedBalancedELBO", "full_trajectory_elbo"),
    "gram_pyro.inference": ("Rollouts", "lprm_best", "majority_vote", "prior_rollouts", "temperature"),
    "gram_pyro.model": ("GRAM", "Carry", "SharedRecursion", "guided_traces"),
    "gram_pyro.priors": ("PRIORS", "TransitionPrior", "register_prior"),
    "gram_pyro.runconfig": ("RunConfig", "list_presets", "preset", "run_preset"),
    "gram_pyro.trainer": ("fit",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """A public name (imported from its module on first use) or a submodule (``gram_pyro.inference``)."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "GRAM",
    "Carry",
    "GRAMConfig",
    "MODES",
    "OptimConfig",
    "PRIORS",
    "Rollouts",
    "RunConfig",
    "SharedRecursion",
    "TrainConfig",
    "TransitionPrior",
    "TruncatedBalancedELBO",
    "fit",
    "full_trajectory_elbo",
    "guided_traces",
    "list_presets",
    "lprm_best",
    "majority_vote",
    "preset",
    "prior_rollouts",
    "register_prior",
    "run_preset",
    "temperature",
]
