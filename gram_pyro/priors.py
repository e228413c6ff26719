"""Stochastic guidance: the transition prior p_θ(ε | u) and posterior q_φ(ε | u, y) (gram-paper.md §1.2, §2.1).

The prior is an extension point.  A prior is an ``nn.Module`` whose ``forward(u, t)`` returns a
reparameterised distribution over ε with batch shape ``u.shape[:-2]`` and event shape ``[S, D]``;
``t`` is the global transition index ``n * T + t_in_step`` (it keeps counting past the training
depth).  Register one with :func:`register_prior` and select it with ``GRAMConfig(prior=name,
prior_args=...)``, or pass an instance as ``GRAM(config, prior=...)``, or subclass ``GRAM`` and override
``GRAM.transition_prior``.  The ELBO uses an analytic KL where torch has one for (Normal, prior) and a
Monte-Carlo KL otherwise (``gram_pyro.elbo``).

Choices the paper leaves open (❓ in gram-paper.md §1.4, §2.1), documented in docs/model.md:
σ = σ_min + (σ_max − σ_min)·sigmoid(a) with the output layer zero-initialised and its bias set so that
σ = σ_init at the start; μ heads zero-initialised so training starts from the deterministic update;
the posterior sees ``u + Embed_y(y)`` (target embedding added at the content positions).
"""

from __future__ import annotations

import math
from typing import Callable

import pyro.distributions as dist
import torch
from torch import nn

from gram_pyro.config import GRAMConfig
from gram_pyro.layers import SwiGLU, lecun_init_
from gram_pyro.lowrank import LowRankSequenceNormal


class LocScaleHead(nn.Module):
    """Per-token, per-channel μ(v) and σ(v), one SwiGLU MLP each (gram-paper.md §1.4, 🟡 Table 4).

    ``mode="stochastic_only"`` fixes μ = 0 and ``mode="guide_only"`` fixes σ = ``guide_only_sigma``
    (the Table 3b ablations); those heads are then not built.
    """

    def __init__(self, cfg: GRAMConfig):
        super().__init__()
        self.cfg = cfg
        self.mu = None if cfg.mode == "stochastic_only" else SwiGLU(cfg.D, cfg.D_h, out_bias=True)
        self.sigma = None if cfg.mode == "guide_only" else SwiGLU(cfg.D, cfg.D_h, out_bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero μ (start from the deterministic update) and start σ at σ_init."""
        c = self.cfg
        if self.mu is not None:
            nn.init.zeros_(self.mu.w2.weight)
            nn.init.zeros_(self.mu.w2.bias)
        if self.sigma is not None:
            frac = (c.sigma_init - c.sigma_min) / (c.sigma_max - c.sigma_min)
            nn.init.zeros_(self.sigma.w2.weight)
            nn.init.constant_(self.sigma.w2.bias, math.log(frac / (1 - frac)))

    def loc(self, v: torch.Tensor) -> torch.Tensor:
        """μ(v) alone (no σ head): what a prior-mean transition needs."""
        return self.mu(v) if self.mu is not None else torch.zeros_like(v)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        loc = self.loc(v)
        if self.sigma is None:
            return loc, torch.full_like(v, c.guide_only_sigma)
        return loc, c.sigma_min + (c.sigma_max - c.sigma_min) * torch.sigmoid(self.sigma(v))


class TransitionPrior(nn.Module):
    """Base class of transition priors p_θ(ε_t | u_t): override :meth:`forward`."""

    def __init__(self, cfg: GRAMConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, u: torch.Tensor, t: int) -> dist.Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, u: torch.Tensor, t: int) -> torch.Tensor:
        """The mean of ``forward(u, t)`` (``truncated_from="prior_mean"``); override when it is cheaper."""
        return self(u, t).mean


class GaussianPrior(TransitionPrior):
    """The paper's prior: ε ~ N(μ_θ(u), σ_θ(u)² I) (Eq. 8)."""

    def __init__(self, cfg: GRAMConfig):
        super().__init__(cfg)
        self.head = LocScaleHead(cfg)

    def forward(self, u: torch.Tensor, t: int) -> dist.Distribution:
        loc, scale = self.head(u)
        return dist.Normal(loc, scale).to_event(2)

    def mean(self, u: torch.Tensor, t: int) -> torch.Tensor:
        """μ_θ(u) without the σ head, for the built-in families centred at it (the Student-t's centre, its mean
        for df > 1); a subclass with its own ``forward`` gets the mean of what that returns."""
        if type(self).forward in _CENTRED_AT_LOC:
            return self.head.loc(u)
        return super().mean(u, t)


class LaplacePrior(GaussianPrior):
    """Heavier-tailed example: ε ~ Laplace(μ_θ(u), σ_θ(u)/√2) (same variance; analytic KL vs Normal)."""

    def forward(self, u: torch.Tensor, t: int) -> dist.Distribution:
        loc, scale = self.head(u)
        return dist.Laplace(loc, scale / math.sqrt(2.0)).to_event(2)


class StudentTPrior(GaussianPrior):
    """Heavy-tailed example: ε ~ StudentT(df, μ_θ(u), σ_θ(u)); no analytic KL, so the ELBO uses MC."""

    def __init__(self, cfg: GRAMConfig, df: float = 4.0):
        super().__init__(cfg)
        self.df = float(df)

    def forward(self, u: torch.Tensor, t: int) -> dist.Distribution:
        loc, scale = self.head(u)
        return dist.StudentT(self.df, loc, scale).to_event(2)


class SigmaSchedulePrior(GaussianPrior):
    """Time-dependent example: σ_t = σ_θ(u) · max(floor, decay^t), exploration shrinks with depth."""

    def __init__(self, cfg: GRAMConfig, decay: float = 0.9, floor: float = 0.05):
        super().__init__(cfg)
        if not 0 < decay <= 1 or not 0 < floor <= 1:
            raise ValueError("sigma_schedule needs 0 < decay <= 1 and 0 < floor <= 1")
        self.decay, self.floor = float(decay), float(floor)

    def schedule(self, t: int) -> float:
        return max(self.floor, self.decay**t)

    def forward(self, u: torch.Tensor, t: int) -> dist.Distribution:
        loc, scale = self.head(u)
        return dist.Normal(loc, scale * self.schedule(t)).to_event(2)


_CENTRED_AT_LOC = {GaussianPrior.forward, LaplacePrior.forward, StudentTPrior.forward, SigmaSchedulePrior.forward}


class GaussianPosterior(nn.Module):
    """q_φ(ε | u, y) = N(μ_φ(u + e_y), σ_φ(u + e_y)² I), e_y a learned embedding of the target tokens."""

    def __init__(self, cfg: GRAMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_y = nn.Embedding(cfg.vocab_size, cfg.D)
        self.head = LocScaleHead(cfg)

    def target_embedding(self, y: torch.Tensor) -> torch.Tensor:
        """[..., L_out] tokens -> [..., S, D], zero at the prefix and at positions past L_out."""
        c = self.cfg
        e = self.embed_y(y)
        pad_after = c.S - c.n_prefix - y.shape[-1]
        return nn.functional.pad(e, (0, 0, c.n_prefix, pad_after))

    def forward(self, u: torch.Tensor, e_y: torch.Tensor) -> dist.Distribution:
        loc, scale = self.head(u + e_y)
        return dist.Normal(loc, scale).to_event(2)


PRIORS: dict[str, Callable[..., TransitionPrior]] = {
    "gaussian": GaussianPrior,
    "laplace": LaplacePrior,
    "student_t": StudentTPrior,
    "sigma_schedule": SigmaSchedulePrior,
}


def register_prior(name: str):
    """Class decorator: make a :class:`TransitionPrior` subclass selectable as ``GRAMConfig(prior=name)``."""

    def deco(cls):
        PRIORS[name] = cls
        return cls

    return deco


def build_prior(cfg: GRAMConfig) -> TransitionPrior:
    if cfg.prior not in PRIORS:
        raise ValueError(f"unknown prior {cfg.prior!r}; registered: {', '.join(sorted(PRIORS))}")
    return PRIORS[cfg.prior](cfg, **dict(cfg.prior_args))


@register_prior("lowrank")
class LowRankPrior(GaussianPrior):
    """Correlated noise (issue 16): ε ~ N(μ_θ(u), diag(σ_θ(u)²) + W_θ(u) W_θ(u)ᵀ) over the flat [S, D] event.

    μ and σ are the Gaussian prior's heads (§1.2, Eq. 8); W [S·D, ``rank``] is ``gain`` × a per-token linear map
    of u (token s gives W's rows for its D channels), so a draw ε = μ + σ ⊙ ξ + W z shares the r coordinates of z
    across all positions: one draw can pick a joint answer.  ``gain`` is a learned scalar starting at
    ``factor_init`` (W's entries start with std ≈ ``factor_init``, the shared part's per-element std
    √rank·factor_init ≈ σ_init = 0.1 at the defaults); W = 0 would be a stationary point of the KL, so it is not
    zero-initialised.  KL against the diagonal posterior is analytic (``gram_pyro.lowrank``).
    """

    def __init__(self, cfg: GRAMConfig, rank: int = 8, factor_init: float = 0.03):
        super().__init__(cfg)
        if int(rank) != rank or rank < 1 or not (math.isfinite(factor_init) and factor_init > 0):
            raise ValueError(f"lowrank needs an integer rank >= 1 and factor_init > 0, got {rank}, {factor_init}")
        self.rank = int(rank)
        self.factor = nn.Linear(cfg.D, cfg.D * self.rank)
        lecun_init_(self.factor)  # the init GRAM gives every Linear; the gain sets the scale
        self.gain = nn.Parameter(torch.tensor(float(factor_init)))

    def cov_factor(self, u: torch.Tensor) -> torch.Tensor:
        """W_θ(u): [..., S, D] -> [..., S, D, rank]."""
        return self.gain * self.factor(u).unflatten(-1, (self.cfg.D, self.rank))

    def forward(self, u: torch.Tensor, t: int) -> dist.Distribution:
        loc, scale = self.head(u)
        return LowRankSequenceNormal(loc, self.cov_factor(u), scale.pow(2))

    def mean(self, u: torch.Tensor, t: int) -> torch.Tensor:
        """μ_θ(u): the mean, without the σ and W heads."""
        return self.head.loc(u)
