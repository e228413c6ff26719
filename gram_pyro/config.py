"""Model configuration: a frozen dataclass and named presets (gram-paper.md §7).

Symbols follow the paper: ``D`` hidden width, ``K`` low-level steps per transition, ``T`` transitions
per supervision step, ``N_sup`` supervision steps, ``beta`` KL weight, ``alpha`` KL balance.
``mode`` selects the Table 3 ablations by configuration, never by separate code (see ``MODES``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

MODES = {
    "gram": "full GRAM: hierarchical core, learned prior N(mu(u), sigma(u)) and posterior q(eps|u,y)",
    "deterministic": "TRM-style baseline: h = u, no eps, no KL",
    "stochastic_only": "no guidance: mu = 0 in prior and posterior, learned sigma (Table 3b)",
    "guide_only": "no stochasticity: sigma fixed at guide_only_sigma -> 0, learned mu (Table 3b)",
    "flat": "looped transformer: no l, one stack f applied K+1 times per transition, eps on h (Table 3a)",
}

# KL weight per task, gram-paper.md §2.4 (App. B.2).
PAPER_BETA = {
    "sudoku": 0.1,
    "arc-1": 0.04,
    "arc-2": 0.1,
    "nqueens-8": 0.07,
    "nqueens-10": 0.045,
    "graph-coloring-8": 0.5,
    "graph-coloring-10": 0.45,
    "mnist": 0.07,
    "sudoku-gen": 0.05,
}


@dataclass(frozen=True)
class GRAMConfig:
    """All architecture and objective settings of one GRAM model.

    Task-dependent sizes (``vocab_size``, ``seq_len``, ``out_len``) are filled from the task; the rest
    from a preset.  ``prior`` names a registered transition prior (``gram_pyro.priors``).
    """

    vocab_size: int = 6
    seq_len: int = 4
    out_len: int | None = None  # decoded content positions; None = seq_len
    n_prefix: int = 0  # puzzle-embedding prefix tokens (paper: 16, zero-initialised registers)
    D: int = 64
    n_heads: int = 4
    D_h: int = 64  # SwiGLU hidden width
    n_layers: int = 1  # blocks per f_L / f_H
    mixer: str = "attention"  # "attention" (RoPE) or "mlp" (sequence SwiGLU, the Sudoku core)
    seq_hidden: int = 64  # hidden width of the sequence-MLP mixer
    decoder: str = "linear"  # "linear" or "swiglu" (paper text vs Table 4, gram-paper.md §1.4)
    K: int = 2
    T: int = 2
    N_sup: int = 4
    mode: str = "gram"
    deep_supervision: bool = True  # False: observe y only after the last of N_sup steps (Table 3a)
    truncated_from: str = "posterior"  # the T-1 truncated transitions: posterior | prior | prior_mean
    prior: str = "gaussian"
    prior_args: tuple[tuple[str, Any], ...] = ()
    sigma_min: float = 1e-3
    sigma_max: float = 1.0
    sigma_init: float = 0.1
    guide_only_sigma: float = 1e-3
    beta: float = 0.1
    alpha: float = 0.8
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mixer not in ("attention", "mlp"):
            raise ValueError(f"unknown mixer {self.mixer!r}; choose 'attention' or 'mlp'")
        if self.truncated_from not in ("posterior", "prior", "prior_mean"):
            raise ValueError(
                f"truncated_from must be 'posterior', 'prior' or 'prior_mean', got {self.truncated_from!r}")
        if self.decoder not in ("linear", "swiglu"):
            raise ValueError(f"unknown decoder {self.decoder!r}; choose 'linear' or 'swiglu'")
        for name in ("K", "T", "N_sup", "D", "D_h", "n_heads", "n_layers", "seq_hidden", "vocab_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.D % self.n_heads:
            raise ValueError(f"D={self.D} is not divisible by n_heads={self.n_heads}")
        if self.n_prefix < 0:
            raise ValueError(f"n_prefix must be >= 0, got {self.n_prefix}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if not 0 < self.sigma_min < self.sigma_init < self.sigma_max < math.inf or not self.guide_only_sigma > 0:
            raise ValueError("need 0 < sigma_min < sigma_init < sigma_max (finite) and guide_only_sigma > 0")
        if self.out_len is not None and not 1 <= self.out_len <= self.seq_len:
            raise ValueError(f"out_len must lie in [1, seq_len={self.seq_len}], got {self.out_len}")

    @property
    def L_out(self) -> int:
        return self.seq_len if self.out_len is None else self.out_len

    @property
    def S(self) -> int:
        """Length of the latent sequence: prefix plus content tokens."""
        return self.n_prefix + self.seq_len

    @property
    def stochastic(self) -> bool:
        return self.mode != "deterministic"

    def replace(self, **changes: Any) -> "GRAMConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # gram-paper.md §7: D = 512, 8 heads, D_h = 512, 2 layers per module, K = 4 (6 for Sudoku), T = 3,
    # N_sup = 16, 16 prefix tokens.  Optimiser settings live with the trainer.
    "paper": dict(D=512, n_heads=8, D_h=512, n_layers=2, K=4, T=3, N_sup=16, n_prefix=16, mixer="attention"),
    "paper-sudoku": dict(
        D=512, n_heads=8, D_h=512, n_layers=2, K=6, T=3, N_sup=16, n_prefix=16, mixer="mlp", seq_hidden=512
    ),
    # CPU presets (2 cores): small widths, short recursions.
    "cpu-tiny": dict(D=32, n_heads=2, D_h=64, n_layers=1, K=1, T=2, N_sup=3, seq_hidden=32),
    "cpu": dict(D=64, n_heads=4, D_h=128, n_layers=1, K=2, T=2, N_sup=4, seq_hidden=64),
}


def paper_beta(task: str) -> float | None:
    """The paper's β for a task name (``nqueens-8``, ``sudoku-9`` -> ``sudoku``), or None if it has none."""
    family = task.rsplit("-", 1)[0] if task.rsplit("-", 1)[-1].isdigit() else task
    return PAPER_BETA.get(task, PAPER_BETA.get(family))


def preset(name: str, task: str | None = None, **overrides: Any) -> GRAMConfig:
    """Build a config from a named preset plus keyword overrides (unknown names raise ValueError).

    With ``task`` and a ``paper*`` preset, β defaults to the paper's value for that task (§2.4).
    """
    if name.startswith("paper") and task is not None and "beta" not in overrides and paper_beta(task) is not None:
        overrides["beta"] = paper_beta(task)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(GRAMConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
    return GRAMConfig(**{**PRESETS[name], **overrides})
