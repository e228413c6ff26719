"""The configuration of a run: three frozen dataclasses, each validated in ``__post_init__`` (gram-paper.md §7).

:class:`GRAMConfig` the model (``model.*`` keys), :class:`OptimConfig` the optimiser and EMA (``optim.*``),
:class:`TrainConfig` the training loop (``train.*``).  ``gram_pyro.runconfig`` bundles them as a ``RunConfig`` and
holds the one preset namespace (``gram_pyro/configs/*.yaml``): ``preset("cpu")`` / ``run_preset("cpu")`` in
Python are what ``--preset cpu`` trains.

Symbols follow the paper: ``D`` hidden width, ``K`` low-level steps per transition, ``T`` transitions
per supervision step, ``N_sup`` supervision steps, ``beta`` KL weight, ``alpha`` KL balance.
``mode`` selects the Table 3 ablations by configuration, never by separate code (see ``MODES``).
Named settings are run presets, ``gram_pyro/configs/*.yaml`` (read by ``gram_pyro.runconfig.preset``).
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

# model.family: the network (gram_pyro/baselines, docs/baselines.md); every mode above is a mode of "gram".
FAMILIES = {
    "gram": "GRAM (gram_pyro/model.py), in any of the modes",
    "trm": "TRM: one shared tiny network, z <- net(z + y + x) n times then y <- net(y + z), halt-only ACT",
    "hrm": "HRM: two modules f_L / f_H, one-step gradient, Q-learning ACT",
    "urm": "URM: Universal Transformer with ConvSwiGLU, truncated backprop through loops",
    "looped": "Looped TF: one stack applied repeatedly, one update per trajectory",
    "direct": "Direct Pred: a non-recursive Transformer, one forward pass",
    "ar": "AR Transformer: causal decoder over [x ; y], ancestral sampling",
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
    # Learned per-puzzle embeddings (ARC, gram-paper.md §1.4; gram_pyro/puzzle_embedding.py): with > 0, x[..., 0] is
    # a puzzle identifier in [0, num_puzzles) whose vector is added to the first prefix token; 0 = off.
    num_puzzles: int = 0
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
    family: str = "gram"  # the network: gram or a baseline system (FAMILIES)
    mode: str = "gram"
    deep_supervision: bool = True  # False: observe y only after the last of N_sup steps (Table 3a)
    truncated_from: str = "posterior"  # the T-1 truncated transitions: posterior | prior | prior_mean
    # Fraction of each batch's rows whose carry into the next supervision step is the prior's rollout of the
    # step (from the same state) instead of the guide's, so later steps train to repair prior-drawn states
    # (issue 16; gram-paper.md §2.3 leaves the training carry open).  0 = the paper's guide carry.
    prior_carry: float = 0.0
    # Fit the LPRM value head on those prior-carry rows' prior states (what it scores at test time, §3.2)
    # instead of on the guide's states, which nearly always decode the target (issue 16).  Needs prior_carry > 0.
    lprm_on_prior: bool = False
    # Pair structure (issue 16; not in the paper): attention logits of content positions a, b get a learned
    # per-head bias w * A[a, b] where the input links them, so the mixer can route by the input (a colouring
    # needs each vertex to read its neighbours).  ``pair_tokens`` holds (input position p, content position a,
    # content position b): the token x[..., p] == ``pair_token_value`` links a and b (gram_pyro/pair_bias.py).
    # ``pair_bias=true`` asks the CLI to fill both from the task; it needs the attention mixer.  Off by default.
    pair_bias: bool = False
    pair_tokens: tuple[tuple[int, int, int], ...] = ()
    pair_token_value: int = 0
    prior: str = "gaussian"
    prior_args: tuple[tuple[str, Any], ...] = ()
    sigma_min: float = 1e-3
    sigma_max: float = 1.0
    sigma_init: float = 0.1
    guide_only_sigma: float = 1e-3
    beta: float = 0.1
    alpha: float = 0.8
    # Free bits (Kingma et al. 2016; issue 16, not in the paper, gram-paper.md §2.4): each row's KL of a transition
    # enters Eq. 14 as max(KL, free_bits) nats, so KL below the budget costs nothing and gets no gradient; the
    # logged KL stays the plain KL.  0 = the paper's objective.
    free_bits: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        self._check_family()
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
        if self.num_puzzles < 0 or (self.num_puzzles and (self.n_prefix < 1 or self.seq_len < 2)):
            raise ValueError(f"num_puzzles={self.num_puzzles} needs num_puzzles >= 0, and n_prefix >= 1 when > 0")
        if not 0.0 <= self.prior_carry <= 1.0:
            raise ValueError(f"prior_carry must lie in [0, 1], got {self.prior_carry}")
        if self.lprm_on_prior and not self.prior_carry > 0:
            raise ValueError("lprm_on_prior needs prior_carry > 0 (the value head is fitted on those rows)")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if not (math.isfinite(self.free_bits) and self.free_bits >= 0):
            raise ValueError(f"free_bits must be a finite number >= 0 (nats per row), got {self.free_bits}")
        if not 0 < self.sigma_min < self.sigma_init < self.sigma_max < math.inf or not self.guide_only_sigma > 0:
            raise ValueError("need 0 < sigma_min < sigma_init < sigma_max (finite) and guide_only_sigma > 0")
        if self.out_len is not None and not 1 <= self.out_len <= self.n_content:
            raise ValueError(f"out_len must lie in [1, {self.n_content}] (the content tokens), got {self.out_len}")
        self._check_pairs()

    def _check_pairs(self) -> None:
        """Pair structure: attention mixer of GRAM only, positions in range (p < seq_len, a != b < n_content)."""
        if not self.pair_bias:
            if self.pair_tokens:
                raise ValueError("pair_tokens needs pair_bias=true (the attention bias that reads them)")
            return
        if self.mixer != "attention" or self.family != "gram":
            raise ValueError("pair_bias biases attention logits: it needs mixer='attention' and family='gram'")
        if not 0 <= self.pair_token_value < self.vocab_size:
            raise ValueError(f"pair_token_value must lie in [0, {self.vocab_size}), got {self.pair_token_value}")
        for link in self.pair_tokens:
            ok = isinstance(link, tuple) and len(link) == 3 and all(type(i) is int for i in link)
            if not ok or not (0 <= link[0] < self.seq_len and 0 <= min(link[1:]) and max(link[1:]) < self.n_content
                              and link[1] != link[2]):
                raise ValueError(f"pair_tokens entries are (p, a, b) with 0 <= p < {self.seq_len} and "
                                 f"a != b in [0, {self.n_content}), got {link!r}")
        if len(set(self.pair_tokens)) != len(self.pair_tokens):
            raise ValueError("pair_tokens holds a repeated (p, a, b) entry")

    def _check_family(self) -> None:
        """A baseline family has no GRAM mode; Looped TF makes one update per trajectory, Direct Pred and AR one step."""
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; choose from {', '.join(FAMILIES)}")
        if self.family != "gram" and self.mode != "gram":
            raise ValueError(f"mode {self.mode!r} is a GRAM ablation; family {self.family!r} takes mode 'gram' only")
        if self.family == "looped" and self.deep_supervision:
            raise ValueError("family 'looped' makes one update per trajectory: set deep_supervision=false")
        if self.family in ("direct", "ar") and self.N_sup != 1:
            raise ValueError(f"family {self.family!r} is one forward pass: set N_sup=1, got {self.N_sup}")

    @property
    def L_out(self) -> int:
        return self.n_content if self.out_len is None else self.out_len

    @property
    def S(self) -> int:
        """Length of the latent sequence: prefix plus content tokens."""
        return self.n_prefix + self.n_content

    @property
    def n_content(self) -> int:
        """Content tokens of x: ``seq_len`` less the puzzle-identifier column when ``num_puzzles`` > 0."""
        return self.seq_len - (1 if self.num_puzzles else 0)

    @property
    def stochastic(self) -> bool:
        return self.family == "gram" and self.mode != "deterministic"

    def replace(self, **changes: Any) -> "GRAMConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, warm-up, clipping and EMA settings (gram-paper.md §7; betas (0.9, 0.95) as TRM, ❓ in GRAM).

    ``ema_decay`` > 0 keeps an exponential moving average of the weights, updated after every optimiser
    step; evaluation and the final model use the EMA weights (the paper evaluates with them).  ``decay`` is the
    learning rate after the warm-up: ``constant`` (TRM's schedule) or ``cosine``, from ``lr`` down to
    ``min_lr_ratio``·lr at the run's last update (``train.batches`` batches); ``warmup`` counts updates (N_sup per
    batch).  The defaults are the ``cpu`` run preset's optimiser (gram_pyro/configs/cpu.yaml: lr 4e-3 after 200
    warm-up updates, EMA decay 0.995; issue 18); ``run_preset("paper")`` has the paper's.
    """

    lr: float = 4e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0
    warmup: int = 200
    batch_size: int = 64
    ema_decay: float = 0.995
    decay: str = "constant"  # constant | cosine
    min_lr_ratio: float = 0.1
    # The puzzle embeddings' sparse sign-SGD (gram_pyro/puzzle_embedding.py; TRM's ARC values): its own lr,
    # with the same warm-up, and decoupled weight decay on the rows each update touches.
    puzzle_lr: float = 1e-2
    puzzle_weight_decay: float = 0.1

    def __post_init__(self):
        if not (math.isfinite(self.puzzle_lr) and self.puzzle_lr > 0 and math.isfinite(self.puzzle_weight_decay)
                and self.puzzle_weight_decay >= 0):
            raise ValueError("need finite puzzle_lr > 0 and puzzle_weight_decay >= 0")
        finite = all(math.isfinite(v) for v in (self.lr, self.weight_decay, self.clip))
        if not finite or not self.lr > 0 or self.weight_decay < 0 or not self.clip > 0 or self.warmup < 0:
            raise ValueError("need finite lr > 0, weight_decay >= 0, clip > 0 and warmup >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.decay not in ("constant", "cosine"):
            raise ValueError(f"config key optim.decay expects constant or cosine, got {self.decay!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True)
class TrainConfig:
    """Training-loop settings: length, evaluation and checkpoint cadence, seed and device."""

    batches: int = 200  # each batch is N_sup optimiser updates (one per supervision step)
    eval_every: int = 50  # batches between prior-rollout evaluations (0 = only at the end)
    eval_width: int = 20  # trajectories per input in those evaluations
    eval_inputs: int = 200  # held-out inputs used in those evaluations
    checkpoint_every: int = 50  # batches between checkpoints (one is always written at the end)
    augment: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # bf16 autocast, CUDA only
    nan_policy: str = "stop"  # on a NaN/Inf loss or gradient: stop (last checkpoint intact) or skip the update
    max_skips: int = 10  # with nan_policy=skip: stop after this many skipped updates

    def __post_init__(self):
        if self.nan_policy not in ("stop", "skip"):
            raise ValueError(f"config key train.nan_policy expects stop or skip, got {self.nan_policy!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"config key train.device expects auto, cpu or cuda, got {self.device!r}")
        for key in ("batches", "eval_width", "eval_inputs"):
            if getattr(self, key) < 1:
                raise ValueError(f"config key train.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("eval_every", "checkpoint_every", "seed", "max_skips"):
            if getattr(self, key) < 0:
                raise ValueError(f"config key train.{key} must be >= 0, got {getattr(self, key)}")
