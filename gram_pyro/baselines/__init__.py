"""The seed's systems as runnable baselines behind GRAM's interface (issue 17; docs/baselines.md).

``model.family`` selects the network: ``gram`` (gram_pyro.model.GRAM, all its modes) or one of the published
systems below.  :func:`build_model` is the one factory the CLI and the API call.  ``MODELS`` maps each name of
``gram train --model NAME`` to the config overrides it stands for (``deterministic`` is GRAM's own ablation).
"""

from __future__ import annotations

from gram_pyro.baselines.ar import ARTransformer
from gram_pyro.baselines.base import ACTCarry, Baseline
from gram_pyro.baselines.direct import DirectPred
from gram_pyro.baselines.hrm import HRM
from gram_pyro.baselines.looped import LoopedTF
from gram_pyro.baselines.trm import TRM
from gram_pyro.baselines.urm import URM
from gram_pyro.config import GRAMConfig

SYSTEMS = {"trm": TRM, "hrm": HRM, "urm": URM, "looped": LoopedTF, "direct": DirectPred, "ar": ARTransformer}

MODELS: dict[str, list[str]] = {
    "gram": [],
    "deterministic": ["model.mode=deterministic"],
    "trm": ["model.family=trm"],
    "hrm": ["model.family=hrm"],
    "urm": ["model.family=urm"],
    "looped": ["model.family=looped", "model.deep_supervision=false"],
    "direct": ["model.family=direct", "model.N_sup=1"],
    "ar": ["model.family=ar", "model.N_sup=1"],
}


def build_model(cfg: GRAMConfig, prior=None):
    """The network of ``cfg.family``: GRAM (with an optional custom ``prior``) or a baseline system."""
    if cfg.family == "gram":
        from gram_pyro.model import GRAM

        return GRAM(cfg, prior=prior)
    if prior is not None:
        raise ValueError(f"a transition prior applies to GRAM only, not to family {cfg.family!r}")
    return SYSTEMS[cfg.family](cfg)


__all__ = ["ACTCarry", "Baseline", "MODELS", "SYSTEMS", "build_model", *[c.__name__ for c in SYSTEMS.values()]]
