"""One training update with deep supervision (gram-paper.md §2.3, App. C.1.1), and its ingredients.

Each optimiser update minimises, per instance, the truncated surrogate (Eq. 14,
:class:`~gram_pyro.elbo.TruncatedBalancedELBO`) plus the auxiliary heads' losses on the detached
state: the halt head (BCE to the reward, §2.5) and the LPRM value head (squared error, Eq. 16).  The
reward is 1 when the decoded answer is right: exact match with y by default, or a task verifier passed
as ``reward_fn`` (multi-answer tasks).  Both heads are fitted on the posterior (guide) rollout that
training already computes — no extra forward pass — and read a detached h, so their gradients never
reach the recursive core.

:class:`StepLoss` is that update's loss as an ``nn.Module`` (what DistributedDataParallel wraps), and
:class:`BatchNoise` draws the guide's noise for the whole global batch from an explicit generator, so
a run's randomness depends on the seed and step only — not on the number of processes or on resuming.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import Independent, Normal
from pyro.poutine.messenger import Messenger
from torch import nn

from gram_pyro.config import OptimConfig
from gram_pyro.elbo import TruncatedBalancedELBO
from gram_pyro.model import GRAM, Carry, update_program


class EMA:
    """Exponential moving average of a module's floating-point parameters and buffers.

    The puzzle-embedding table is copied, not averaged: TRM evaluates with the raw table (its rows change
    only when their puzzle is in a batch, so an average would lag by many epochs).
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            if k.startswith("puzzle_embedding."):
                self.shadow[k].copy_(v)
            elif k in self.shadow:
                self.shadow[k].lerp_(v, 1.0 - self.decay)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow, strict=False)


def make_optimizer(gram: GRAM, oc: OptimConfig, total_updates: int | None = None
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warm-up, then a constant learning rate (TRM's schedule) or, with ``oc.decay="cosine"``,
    a cosine from lr to ``oc.min_lr_ratio``·lr at the last of ``total_updates`` updates (required then; held after).

    AdamW runs as torch's fused kernel where every parameter is a CPU or CUDA float tensor (one pass over each
    parameter instead of about ten; the same update up to float rounding, issue 18), else as its per-tensor loop.
    """
    params = list(gram.parameters())
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) or None
    opt = torch.optim.AdamW(params, lr=oc.lr, weight_decay=oc.weight_decay, betas=oc.betas, fused=fused)
    if oc.decay == "cosine" and not total_updates:
        raise ValueError("optim.decay=cosine needs the run's number of updates")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(oc, s, total_updates))


def lr_factor(oc: OptimConfig, s: int, total_updates: int | None) -> float:
    """The learning rate of update ``s`` (from 0) as a fraction of ``oc.lr``."""
    warm = min(1.0, (s + 1) / max(1, oc.warmup))
    if oc.decay == "constant" or s < oc.warmup:
        return warm
    progress = min(1.0, (s - oc.warmup) / max(1, total_updates - 1 - oc.warmup))
    return oc.min_lr_ratio + (1.0 - oc.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def exact_match(x: torch.Tensor, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Default reward: 1 where the decoded answer equals the training target."""
    return (y_hat == y).all(-1).float()


class BatchNoise(Messenger):
    """Draw the guide's Normal noise for rows ``[offset, offset + B)`` of a ``global_batch`` from ``generator``.

    Reparameterised exactly as ``rsample`` (value = loc + scale·noise).  Every process draws the same
    global noise and keeps its rows, so 1 and k processes see identical noise for the same global batch.
    """

    def __init__(self, generator: torch.Generator, global_batch: int, offset: int = 0):
        super().__init__()
        self.generator, self.global_batch, self.offset = generator, global_batch, offset

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["value"] is not None:
            return
        fn = msg["fn"]
        base = fn.base_dist if isinstance(fn, Independent) else fn
        if not isinstance(base, Normal):
            return
        shape = fn.batch_shape + fn.event_shape
        noise = torch.randn((self.global_batch, *shape[1:]), generator=self.generator, device=base.loc.device)
        msg["value"] = base.loc + base.scale * noise[self.offset : self.offset + shape[0]]


@torch.no_grad()
def prior_step(gram: GRAM, x: torch.Tensor, carry_in: Carry | None, n: int, n_sup: int) -> tuple[Carry, torch.Tensor]:
    """A prior rollout p_θ(τ | x) of supervision step(s) ``n..n+n_sup-1`` from ``carry_in``: (carry, decoded answer).

    Runs outside the ELBO's traces and the guide's BatchNoise; the prior's noise comes from the global torch RNG.
    """
    with poutine.block():
        tr = poutine.trace(gram.model).get_trace(x, None, carry=carry_in, n_sup=n_sup, step_offset=n)
    return tr.nodes["_RETURN"]["value"], tr.nodes[f"y_hat_{n + n_sup - 1}"]["value"]


def _rows(carry: Carry | None, rows: slice) -> Carry | None:
    return None if carry is None else Carry(carry.h[rows], None if carry.l is None else carry.l[rows])


def _cat(a: Carry, b: Carry) -> Carry:
    return Carry(torch.cat([a.h, b.h]), None if a.l is None else torch.cat([a.l, b.l]))


class StepLoss(nn.Module):
    """The loss of one supervision-step update, per instance; ``forward`` is what DDP wraps."""

    def __init__(self, gram: GRAM, alpha: float):
        super().__init__()
        self.gram = gram
        self.elbo = TruncatedBalancedELBO(alpha=alpha, free_bits=gram.cfg.free_bits, max_plate_nesting=1)

    def forward(self, x, y, carry_in: Carry | None, n: int, reward_fn: Callable = exact_match):
        """Returns (loss, stats dict of floats, next carry, decoded answer of the step).

        With ``cfg.prior_carry`` > 0, that fraction of the rows carries a prior rollout of the step into the next
        step instead of the guide's trajectory: the paper trains every step on guide trajectories (gram-paper.md
        §2.3), which hold the answer after the first step, so later steps never see a wrong state to repair
        (issue 16, docs/results.md); on these rows the guide (which sees y) must steer a prior-drawn state to y,
        and the balanced KL teaches the prior that repair.  ``cfg.lprm_on_prior`` fits the LPRM value head on
        those rows' prior states (the states it scores at test time, §3.2) instead of the guide's.
        """
        gram = self.gram
        n_sup = 1 if gram.cfg.deep_supervision else gram.cfg.N_sup
        with gram.shared_recursion(), update_program():  # a torch optimiser steps gram.parameters()
            terms = self.elbo.step_terms(gram.model, gram.guide, x, y, carry=carry_in, n_sup=n_sup, step_offset=n)
        guide_carry = terms.model_trace.nodes["_RETURN"]["value"]
        y_hat = terms.model_trace.nodes[f"y_hat_{n + n_sup - 1}"]["value"]
        reward = reward_fn(x, y_hat, y).to(guide_carry.h.dtype)
        halt_loss = getattr(gram, "halt_loss", None)  # a baseline's own ACT loss (gram_pyro/baselines)
        aux = (halt_loss(terms.model_trace, x, carry_in, reward, n + n_sup - 1) if halt_loss is not None
               else F.binary_cross_entropy_with_logits(gram.halt_logit(guide_carry.h), reward))
        B, c = x.shape[0], gram.cfg
        k = round(c.prior_carry * B) if c.stochastic else 0
        carry = guide_carry
        if k:  # the last k rows (batches come in random order) continue from a prior rollout of the step
            rows = slice(B - k, B)
            prior_carry, prior_y_hat = prior_step(gram, x[rows], _rows(carry_in, rows), n, n_sup)
            carry = _cat(_rows(guide_carry, slice(0, B - k)), prior_carry)
        if k and c.lprm_on_prior:  # the value head judges prior states, as at test time
            prior_reward = reward_fn(x[rows], prior_y_hat, y[rows]).to(guide_carry.h.dtype)
            aux = aux + F.mse_loss(gram.value(prior_carry.h), prior_reward)
        else:
            aux = aux + F.mse_loss(gram.value(guide_carry.h), reward)
        loss = terms.loss / B + aux
        stats = {
            "loss": (terms.nll + terms.kl) / B,
            "nll": terms.nll / B,
            "kl": terms.kl / B,
            "aux": float(aux.detach()),
            "posterior_acc": float(reward.mean()),
        }
        return loss, stats, carry, y_hat

