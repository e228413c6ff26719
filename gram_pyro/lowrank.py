"""A low-rank-plus-diagonal Gaussian over ε [S, D] and its analytic KL from GRAM's posterior (issue 16).

The paper's transition prior N(μ_θ(u), σ_θ(u)² I) (gram-paper.md §1.2, Eq. 8) draws every position's noise
independently, so one prior draw cannot pick a *joint* answer (a colouring is a choice made by all vertices
together).  :class:`LowRankSequenceNormal` is N(μ, diag(σ²) + W Wᵀ) over the flattened S·D event, with
W [S·D, r]: ε = μ + σ ⊙ ξ + W z, ξ ~ N(0, I_{S·D}), z ~ N(0, I_r), so the r shared coordinates of z move all
positions at once.  It keeps GRAM's event shape [S, D] (``to_event(2)`` of the Normal prior), so the model,
the temperature handler and ``truncated_from="prior_mean"`` (its ``mean``) treat it like the Gaussian prior.

One flat event rather than one low-rank Gaussian over S per channel: a flat event costs one r×r Cholesky
factor per instance (O(S·D·r² + r³)); per channel it would cost D of them and could not correlate channels.

The posterior stays diagonal (``GaussianPosterior``), and KL(q ‖ p) for Independent(Normal) vs this family is
registered here in closed form (both are Gaussians, §2.2 "the KL ... is analytic"):

    KL = ½ [tr(Σ_p⁻¹ Σ_q) + (μ_p − μ_q)ᵀ Σ_p⁻¹ (μ_p − μ_q) − n + log det Σ_p − log det Σ_q],  n = S·D,

with Σ_p⁻¹ by Woodbury (Σ_p = D_p + W Wᵀ, C = I_r + Wᵀ D_p⁻¹ W = L Lᵀ):
tr(Σ_p⁻¹ Σ_q) = Σ_i v_i / d_i − ‖L⁻¹ Wᵀ diag(√v / d)‖²_F, and the Mahalanobis and log-det terms from
``LowRankMultivariateNormal.log_prob`` at μ_q.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions import Independent, LowRankMultivariateNormal, Normal, constraints, register_kl


class LowRankSequenceNormal(dist.TorchDistribution):
    """N(loc, diag(cov_diag) + W Wᵀ) over [..., S, D], the covariance taken over the flattened S·D event.

    ``loc`` and ``cov_diag`` are [..., S, D], ``cov_factor`` W is [..., S, D, r]; batch shape ``loc.shape[:-2]``.
    The flat distribution is the attribute ``flat`` (a ``LowRankMultivariateNormal``), so the ELBO's
    gradient-scaled copy (``elbo.grad_scaled``, which the balanced KL uses) covers its tensors too.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc: torch.Tensor, cov_factor: torch.Tensor, cov_diag: torch.Tensor, validate_args=None):
        self.flat = LowRankMultivariateNormal(loc.flatten(-2), cov_factor.flatten(-3, -2), cov_diag.flatten(-2))
        super().__init__(self.flat.batch_shape, loc.shape[-2:], validate_args=validate_args)

    def _unflat(self, v: torch.Tensor) -> torch.Tensor:
        return v.unflatten(-1, self.event_shape)

    def expand(self, batch_shape, _instance=None) -> "LowRankSequenceNormal":
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(LowRankSequenceNormal, _instance)
        new.flat = self.flat.expand(batch_shape)
        super(LowRankSequenceNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self._unflat(self.flat.mean)

    @property
    def variance(self) -> torch.Tensor:
        return self._unflat(self.flat.variance)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self._unflat(self.flat.rsample(sample_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.flat.log_prob(value.flatten(-2))

    def entropy(self) -> torch.Tensor:
        return self.flat.entropy()


def trace_term(var_q: torch.Tensor, p: LowRankMultivariateNormal) -> torch.Tensor:
    """tr(Σ_p⁻¹ diag(var_q)) for a flat low-rank p, by Woodbury, without forming an n×n matrix."""
    W, d = p.cov_factor, p.cov_diag
    r = W.shape[-1]
    capacitance = torch.eye(r, dtype=W.dtype, device=W.device) + W.mT @ (W / d.unsqueeze(-1))
    L = torch.linalg.cholesky(capacitance)
    A = (W * (var_q.sqrt() / d).unsqueeze(-1)).mT  # [..., r, n]
    solved = torch.linalg.solve_triangular(L, A, upper=False)
    return (var_q / d).sum(-1) - solved.pow(2).sum((-2, -1))


@register_kl(Independent, LowRankSequenceNormal)
def _kl_diag_normal_lowrank(q: Independent, p: LowRankSequenceNormal) -> torch.Tensor:
    """Analytic KL(q ‖ p) for q = Normal(μ_q, σ_q).to_event(2) over the same [S, D] event (module docstring)."""
    if not isinstance(q.base_dist, Normal) or q.reinterpreted_batch_ndims != 2 or q.event_shape != p.event_shape:
        raise NotImplementedError
    shape = torch.broadcast_shapes(q.batch_shape, p.batch_shape) + q.event_shape
    loc_q = q.base_dist.loc.expand(shape).flatten(-2)
    scale_q = q.base_dist.scale.expand(shape).flatten(-2)
    n = loc_q.shape[-1]
    return (0.5 * trace_term(scale_q.pow(2), p.flat)
            - 0.5 * n * (1 + math.log(2 * math.pi))
            - p.flat.log_prob(loc_q)
            - scale_q.log().sum(-1))
