"""GRAM's objectives: the truncated per-step surrogate (Eq. 14) and the full-trajectory ELBO (Eq. 13).

:class:`TruncatedBalancedELBO` is a ``TraceMeanField_ELBO`` whose KL terms are balanced (gram-paper.md
§2.4, DreamerV2):  α·KL(sg q ‖ p) + (1−α)·KL(q ‖ sg p).  The value equals the plain KL; the prior
receives α and the posterior (1−α) of the KL gradient.  Truncation is expressed in the program, not
here: the model and guide mask the first T−1 transitions of each supervision step (``poutine.mask``)
and run them without gradient, and scale latent sites by β (``poutine.scale``), so the per-step loss is

    −log p_θ(y | z_T^(n)) + β · KL(q_φ(ε_T^(n) | u_T^(n), y) ‖ p_θ(ε_T^(n) | u_T^(n)))        (Eq. 14)

KL is analytic where torch registers one for (posterior, prior), Monte-Carlo (log q − log p at the
guide's sample) otherwise, e.g. for a Student-t prior.  :func:`full_trajectory_elbo` evaluates Eq. 13
(every transition's KL, likelihood of the terminal state only) as the App. A.3 diagnostic.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled, torch_item
from pyro.poutine.util import prune_subsample_sites
from pyro.util import warn_if_nan
from torch.distributions import kl_divergence

from gram_pyro.model import guided_traces


def detach_params(d: dist.Distribution) -> dist.Distribution:
    """A copy of ``d`` with every parameter tensor detached (stop-gradient, gram-paper.md §2.4), for any distribution.

    The copy keeps ``d``'s type and walks its attributes: tensors are detached, and nested distributions and
    transforms (``Independent``'s base, a mask's base, ``MixtureSameFamily``'s mixture and components, a
    ``TransformedDistribution``'s transforms) are copied the same way, so parameters that are not constructor
    arguments are covered too.  Parameters held by an ``nn.Module`` inside a distribution (normalising-flow
    transforms) are not: give such priors their own stop-gradient by overriding this protocol in the prior.
    """
    return grad_scaled(d, 0.0)


def grad_scaled(obj, c: float):
    """``obj`` (a tensor or a distribution, walked as :func:`detach_params` walks it) with the same values,
    whose tensors pass ``c`` times their gradient back: c = 0 detaches, c = 1 returns ``obj`` itself."""
    if c == 1.0:
        return obj
    return _mapped(obj, (lambda t: t.detach()) if c == 0.0 else (lambda t: _GradScale.apply(t, c)), {})


class _GradScale(torch.autograd.Function):
    """The identity whose backward pass multiplies the gradient by a constant."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, c: float) -> torch.Tensor:
        ctx.c = c
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.c, None


def _mapped(obj, fn, memo: dict):
    if isinstance(obj, torch.Tensor):
        return fn(obj) if obj.requires_grad else obj
    if isinstance(obj, (torch.distributions.Distribution, torch.distributions.Transform)):
        if id(obj) not in memo:
            memo[id(obj)] = new = copy.copy(obj)
            new.__dict__.update({k: _mapped(v, fn, memo) for k, v in vars(obj).items()})
        return memo[id(obj)]
    if type(obj) in (list, tuple):
        return type(obj)(_mapped(v, fn, memo) for v in obj)
    return obj


def kl_term(q: dist.Distribution, p: dist.Distribution, value: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ p): analytic when registered, else the one-sample estimate log q(value) − log p(value)."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(value) - p.log_prob(value)


def balanced_kl(q: dist.Distribution, p: dist.Distribution, value: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·KL(sg q ‖ p) + (1−α)·KL(q ‖ sg p) (gram-paper.md §2.4).

    Both terms equal KL(q ‖ p) in value, so it is evaluated once, on copies of q and of the sample ``value``
    that pass (1−α) of their gradient back and a copy of p that passes α: the same value and gradients as the
    two stop-gradient terms, at the cost of one KL.
    """
    return kl_term(grad_scaled(q, 1 - alpha), grad_scaled(p, alpha), grad_scaled(value, 1 - alpha))


class StepTerms(NamedTuple):
    """One ELBO evaluation: the differentiable surrogate loss and its parts (floats) plus the traces."""

    loss: torch.Tensor
    nll: float
    kl: float
    model_trace: poutine.Trace
    guide_trace: poutine.Trace


class TruncatedBalancedELBO(TraceMeanField_ELBO):
    """Eq. 14 with KL balancing; ``alpha=0.8`` as in the paper, ``alpha=0.5`` gives the unbalanced gradient.

    ``loss``/``differentiable_loss``/``loss_and_grads`` work as for any Pyro ELBO (so ``pyro.infer.SVI``
    trains GRAM); :meth:`step_terms` also returns the parts and traces for logging and for the carry.

    ``free_bits`` = λ > 0 (``GRAMConfig.free_bits``; Kingma et al. 2016, and the free nats DreamerV3 pairs with the
    KL balancing the paper takes from Dreamer, gram-paper.md §2.4; the paper uses none) replaces each row's KL of
    each transition in Eq. 14 by max(KL, λ): −log p_θ(y | z_T^(n)) + β·max(KL(q ‖ p), λ).  A row whose KL is below λ
    pays λ and sends no KL gradient to prior or posterior, so the guide may carry λ nats per row and transition for
    free (issue 16: the later steps' KL is below 1.5 nats).  The logged KL (``StepTerms.kl``) stays the plain KL.
    With a Monte-Carlo KL the max is taken of the one-sample estimate.
    """

    def __init__(self, alpha: float = 0.8, free_bits: float = 0.0, **kwargs):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if not (math.isfinite(free_bits) and free_bits >= 0):
            raise ValueError(f"free_bits must be a finite number >= 0, got {free_bits}")
        super().__init__(**kwargs)
        self.alpha = alpha
        self.free_bits = float(free_bits)

    def _get_trace(self, model, guide, args, kwargs):
        """With validation on, Pyro's full checks; off, skip log-densities that Eq. 14 never reads.

        The loss reads only the observed sites' log p and the (analytic or on-demand Monte-Carlo) KL,
        so the lean path scores just the observed sites; both paths give the same loss (tested).
        """
        if is_validation_enabled():
            return super()._get_trace(model, guide, args, kwargs)
        model_trace, guide_trace = guided_traces(model, guide, *args, **kwargs)
        model_trace = prune_subsample_sites(model_trace)
        model_trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"])
        return model_trace, prune_subsample_sites(guide_trace)

    def _terms(self, model_trace, guide_trace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(−Σ log p(observed), Σ scaled and masked balanced KL with free bits, the same without free bits): the
        first two differentiable (the surrogate's), the third detached (what is logged)."""
        log_lik, kl_sum, kl_plain = 0.0, 0.0, 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                log_lik = log_lik + site["log_prob_sum"]
                continue
            g = guide_trace.nodes[name]
            if g["mask"] is False:  # truncated transition: sampled from q, no KL
                continue
            kl = balanced_kl(g["fn"], site["fn"], g["value"], self.alpha)  # [B]: one KL per row
            kl_plain = kl_plain + scale_and_mask(kl.detach(), scale=g["scale"], mask=g["mask"]).sum()
            if self.free_bits:
                kl = kl.clamp(min=self.free_bits)  # value max(KL, λ), no gradient below λ
            kl_sum = kl_sum + scale_and_mask(kl, scale=g["scale"], mask=g["mask"]).sum()
        return -torch.as_tensor(log_lik), torch.as_tensor(kl_sum), torch.as_tensor(kl_plain)

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        nll, kl, _ = self._terms(model_trace, guide_trace)
        surrogate = nll + kl
        return torch_item(surrogate), surrogate

    def step_terms(self, model, guide, *args, **kwargs) -> StepTerms:
        """Differentiable surrogate, NLL and (β-scaled) KL of one particle, with both traces."""
        if self.num_particles != 1:
            raise ValueError("step_terms uses one particle; fold extra particles into the batch instead")
        model_trace, guide_trace = next(iter(self._get_traces(model, guide, args, kwargs)))
        nll, kl, kl_plain = self._terms(model_trace, guide_trace)
        loss = nll + kl
        warn_if_nan(loss, "loss")
        return StepTerms(loss, torch_item(nll), torch_item(kl_plain), model_trace, guide_trace)


@torch.no_grad()
def full_trajectory_elbo(gram, x: torch.Tensor, y: torch.Tensor, n_sup: int | None = None) -> dict:
    """Eq. 13 on a whole trajectory of ``n_sup`` steps sampled from q, with the truncated surrogate beside it.

    Returns per-instance means (over the batch) of: ``elbo`` = log p(y | z_{T_total}) − Σ_t KL_t,
    ``log_lik`` (terminal), ``kl_total``, ``kl_per_transition`` (list, length n_sup·T), and
    ``surrogate`` = mean over supervision steps of [log p(y | z_T^(n)) − KL(last transition of n)].
    Unweighted (β = 1): this is the bound itself, not the training loss.
    """
    c = gram.cfg
    n_sup = c.N_sup if n_sup is None else n_sup
    model_trace, guide_trace = guided_traces(gram.model, gram.guide, x, y, n_sup=n_sup, beta=1.0)
    B = x.shape[0]
    kls = torch.zeros(n_sup, c.T)
    for n in range(n_sup):
        for t in range(c.T):
            name = f"eps_{n}_{t}"
            if name in guide_trace.nodes:
                g, m = guide_trace.nodes[name], model_trace.nodes[name]
                kls[n, t] = kl_term(g["fn"], m["fn"], g["value"]).sum() / B
    log_lik = torch.zeros(n_sup)
    for n in range(n_sup):
        site = model_trace.nodes.get(f"y_{n}")
        if site is not None:
            log_lik[n] = site["fn"].log_prob(y).sum() / B
    terminal = float(log_lik[-1])
    kl_total = float(kls.sum())
    out = {
        "elbo": terminal - kl_total,
        "log_lik": terminal,
        "kl_total": kl_total,
        "kl_per_transition": kls.flatten().tolist(),
    }
    if c.deep_supervision:
        out["surrogate"] = float((log_lik - kls[:, -1]).mean())
    return out
