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
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from pyro.distributions import Independent, Normal
from pyro.poutine.messenger import Messenger
from torch import nn

from gram_pyro.elbo import TruncatedBalancedELBO
from gram_pyro.model import GRAM, Carry


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, warm-up, clipping and EMA settings (gram-paper.md §7; betas (0.9, 0.95) as TRM, ❓ in GRAM).

    ``ema_decay`` > 0 keeps an exponential moving average of the weights, updated after every optimiser
    step; evaluation and the final model use the EMA weights (the paper evaluates with them).
    """

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0
    warmup: int = 20
    batch_size: int = 64
    ema_decay: float = 0.0

    def __post_init__(self):
        finite = all(math.isfinite(v) for v in (self.lr, self.weight_decay, self.clip))
        if not finite or not self.lr > 0 or self.weight_decay < 0 or not self.clip > 0 or self.warmup < 0:
            raise ValueError("need finite lr > 0, weight_decay >= 0, clip > 0 and warmup >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


OPTIM_PRESETS = {
    # gram-paper.md §7: AdamW lr 1e-4, weight decay 1.0, clip 1.0, batch 768, EMA 0.9999; warm-up as TRM.
    "paper": OptimConfig(lr=1e-4, weight_decay=1.0, clip=1.0, warmup=2000, batch_size=768, ema_decay=0.9999),
    "cpu": OptimConfig(lr=2e-3, weight_decay=0.1, clip=1.0, warmup=10, batch_size=64, ema_decay=0.98),
}


class EMA:
    """Exponential moving average of a module's floating-point parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v, 1.0 - self.decay)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow, strict=False)


def make_optimizer(gram: GRAM, oc: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warm-up to a constant learning rate (TRM's schedule)."""
    opt = torch.optim.AdamW(gram.parameters(), lr=oc.lr, weight_decay=oc.weight_decay, betas=oc.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, oc.warmup)))
    return opt, sched


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


class StepLoss(nn.Module):
    """The loss of one supervision-step update, per instance; ``forward`` is what DDP wraps."""

    def __init__(self, gram: GRAM, alpha: float):
        super().__init__()
        self.gram = gram
        self.elbo = TruncatedBalancedELBO(alpha=alpha, max_plate_nesting=1)

    def forward(self, x, y, carry: Carry | None, n: int, reward_fn: Callable = exact_match):
        """Returns (loss, stats dict of floats, next carry, decoded answer of the step)."""
        gram = self.gram
        n_sup = 1 if gram.cfg.deep_supervision else gram.cfg.N_sup
        with gram.shared_recursion():
            terms = self.elbo.step_terms(gram.model, gram.guide, x, y, carry=carry, n_sup=n_sup, step_offset=n)
        carry = terms.model_trace.nodes["_RETURN"]["value"]
        y_hat = terms.model_trace.nodes[f"y_hat_{n + n_sup - 1}"]["value"]
        reward = reward_fn(x, y_hat, y).to(carry.h.dtype)
        aux = F.binary_cross_entropy_with_logits(gram.halt_logit(carry.h), reward)
        aux = aux + F.mse_loss(gram.value(carry.h), reward)
        B = x.shape[0]
        loss = terms.loss / B + aux
        stats = {
            "loss": (terms.nll + terms.kl) / B,
            "nll": terms.nll / B,
            "kl": terms.kl / B,
            "aux": float(aux.detach()),
            "posterior_acc": float(reward.mean()),
        }
        return loss, stats, carry, y_hat

