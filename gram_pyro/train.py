"""Training with deep supervision: one optimiser update per supervision step (gram-paper.md §2.3, App. C.1.1).

Each update minimises the truncated surrogate (Eq. 14, :class:`~gram_pyro.elbo.TruncatedBalancedELBO`)
plus the auxiliary heads' losses on the detached state: the halt head (BCE to "the decoded answer is
exactly y", §2.5) and the LPRM value head (squared error to the same 0/1 reward, Eq. 16).  Both heads
are fitted on the posterior (guide) rollout that training already computes, so they cost no extra
forward pass; their gradients cannot reach the recursive core because they read a detached h.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from gram_pyro.elbo import TruncatedBalancedELBO
from gram_pyro.model import GRAM, Carry


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, warm-up, clipping and EMA settings (gram-paper.md §7; betas (0.9, 0.95) as TRM, ❓ in GRAM).

    ``ema_decay`` > 0 keeps an exponential moving average of the weights, updated after every optimiser
    step; :func:`fit` leaves the EMA weights in the model at the end (the paper evaluates with them).
    """

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0
    warmup: int = 20
    batch_size: int = 64
    ema_decay: float = 0.0


OPTIM_PRESETS = {
    # gram-paper.md §7: AdamW lr 1e-4, weight decay 1.0, clip 1.0, batch 768, EMA 0.9999; warm-up as TRM.
    "paper": OptimConfig(lr=1e-4, weight_decay=1.0, clip=1.0, warmup=2000, batch_size=768, ema_decay=0.9999),
    "cpu": OptimConfig(lr=3e-3, weight_decay=0.1, clip=1.0, warmup=10, batch_size=64, ema_decay=0.0),
}


class EMA:
    """Exponential moving average of a module's parameters and buffers (float tensors only)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v, 1.0 - self.decay)

    def copy_to(self, module: torch.nn.Module) -> None:
        module.load_state_dict(self.shadow, strict=False)


def make_optimizer(gram: GRAM, oc: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW(gram.parameters(), lr=oc.lr, weight_decay=oc.weight_decay, betas=oc.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, oc.warmup)))
    return opt, sched


def aux_loss(gram: GRAM, h: torch.Tensor, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Halt BCE + LPRM squared error on the detached state, reward = exact match of ŷ with y."""
    reward = (y_hat == y).all(-1).float()
    halt = F.binary_cross_entropy_with_logits(gram.halt_logit(h), reward)
    return halt + F.mse_loss(gram.value(h), reward)


def supervision_step(
    gram: GRAM,
    elbo: TruncatedBalancedELBO,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    carry: Carry | None,
    n: int,
    clip: float,
) -> tuple[Carry, dict[str, float]]:
    """One optimiser update for supervision step ``n`` (all N_sup steps at once without deep supervision)."""
    n_sup = 1 if gram.cfg.deep_supervision else gram.cfg.N_sup
    with gram.shared_recursion():
        terms = elbo.step_terms(gram.model, gram.guide, x, y, carry=carry, n_sup=n_sup, step_offset=n)
    carry = terms.model_trace.nodes["_RETURN"]["value"]
    last = n + n_sup - 1
    y_hat = terms.model_trace.nodes[f"y_hat_{last}"]["value"]
    aux = aux_loss(gram, carry.h, y_hat, y)
    loss = (terms.loss + aux) / x.shape[0]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(gram.parameters(), clip)
    opt.step()
    B = x.shape[0]
    return carry, {
        "loss": terms.nll / B + terms.kl / B,
        "nll": terms.nll / B,
        "kl": terms.kl / B,
        "aux": float(aux.detach()) / B,
        "grad_norm": float(grad_norm),
        "posterior_acc": float((y_hat == y).all(-1).float().mean()),
    }


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator:
    """Endless shuffled minibatches (the last partial batch of each epoch is dropped when possible)."""
    n = len(x)
    bs = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            yield x[idx], y[idx]


def fit(
    gram: GRAM,
    x: torch.Tensor,
    y: torch.Tensor,
    num_batches: int,
    oc: OptimConfig = OptimConfig(),
    augment: Callable | None = None,
    on_log: Callable[[dict], None] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Train for ``num_batches`` batches of N_sup supervision steps each; returns per-batch means.

    ``augment(x, y) -> (x, y)`` is applied to each batch; ``on_log(record)`` receives every record.
    """
    elbo = TruncatedBalancedELBO(alpha=gram.cfg.alpha, max_plate_nesting=1)
    opt, sched = make_optimizer(gram, oc)
    gen = torch.Generator().manual_seed(seed)
    ema = EMA(gram, oc.ema_decay) if oc.ema_decay > 0 else None
    history = []
    steps = gram.cfg.N_sup if gram.cfg.deep_supervision else 1
    gram.train()
    for b, (xb, yb) in zip(range(num_batches), batches(x, y, oc.batch_size, gen)):
        if augment is not None:
            xb, yb = augment(xb, yb)
        carry, recs = None, []
        for n in range(steps):
            carry, rec = supervision_step(gram, elbo, opt, xb, yb, carry, n, oc.clip)
            sched.step()
            if ema is not None:
                ema.update(gram)
            recs.append(rec)
        record = {"batch": b, **{k: sum(r[k] for r in recs) / len(recs) for k in recs[0]}}
        record["final_posterior_acc"] = recs[-1]["posterior_acc"]
        if not all(math.isfinite(v) for v in record.values()):
            raise FloatingPointError(f"non-finite loss at batch {b}: {record}")
        history.append(record)
        if on_log is not None:
            on_log(record)
    if ema is not None:
        ema.copy_to(gram)
    gram.eval()
    return history
