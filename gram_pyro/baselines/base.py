"""What every baseline shares: encoder, heads, z_0, and the Pyro program around one supervision step.

A baseline is a plain torch network behind GRAM's interface (gram_pyro/model.py): ``model(x, y, carry,
n_sup, step_offset, beta)`` runs ``n_sup`` supervision steps and, per step n, records the deterministic
sites ``y_hat_{n}``, ``halt_{n}``, ``value_{n}`` and ``q_{n}`` (halt/continue logits, with gradient) and
observes ``y_{n}`` with a Categorical; ``guide`` only registers the module (there is no latent site, so the
ELBO of Eq. 14 reduces to the cross-entropy of the observed answer).  So the Trainer, StepLoss, the ELBO,
prior_rollouts, evaluation, checkpoints, ``gram solve`` and ``gram report`` run a baseline unchanged.

Subclasses implement :meth:`Baseline.step` (the recursion of one supervision step).  :class:`ACTBaseline`
adds the ACT of TRM / URM / HRM in training (baselines-and-data.md §1.3, §2.1, §4): a row halts when its
halt score fires, or after N_sup steps; with probability 0.1 per step a minimum of U{2..N_sup} steps
applies first (exploration, redrawn every step as in the official code); halted rows leave the loss for
the rest of the batch (the official code swaps in a fresh puzzle instead; docs/baselines.md).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from gram_pyro.config import GRAMConfig
from gram_pyro.layers import SwiGLU, lecun_init_
from gram_pyro.model import readout_sites, register_params
from gram_pyro.puzzle_embedding import PuzzleEmbedding

_NAMES = itertools.count()
EXPLORE = 0.1  # halting exploration probability (TRM trm.yaml, HRM, URM)


class ACTCarry(NamedTuple):
    """State between supervision steps: h (decoded; TRM's y, HRM's z_H), l (TRM's z, HRM's z_L, or None)
    and, in training, which rows have halted."""

    h: torch.Tensor
    l: torch.Tensor | None = None
    halted: torch.Tensor | None = None

    def detach(self) -> "ACTCarry":
        return ACTCarry(self.h.detach(), None if self.l is None else self.l.detach(), self.halted)


class Baseline(nn.Module):
    """Shared parts of the published systems (baselines-and-data.md §1.2): token embedding × √D, prefix tokens,
    fixed random initial states z_0, a linear (or SwiGLU) output head, a 2-logit Q head and the LPRM value head."""

    stochastic = False
    draws_latents = False  # prior rollouts are deterministic: N trajectories of an input are one (ar.py: True)
    two_states = False  # l is carried (TRM, HRM)
    detach_steps = True  # carry detached between supervision steps (False: Looped TF's full backprop)

    def __init__(self, cfg: GRAMConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.D
        self.embed = nn.Embedding(cfg.vocab_size, D)
        self.prefix = nn.Parameter(torch.zeros(cfg.n_prefix, D))
        self.puzzle_embedding = PuzzleEmbedding(cfg.num_puzzles, D) if cfg.num_puzzles else None
        self.decoder = nn.Linear(D, cfg.vocab_size) if cfg.decoder == "linear" else SwiGLU(D, cfg.D_h, cfg.vocab_size)
        self.halt_head = nn.Linear(D, 2)  # (q_halt, q_continue) from the first token (TRM trm.py:220-221)
        self.value_head = nn.Linear(D, 1)
        z0 = torch.randn(2, D, generator=torch.Generator().manual_seed(cfg.seed))  # fixed, not learned (§1.2)
        self.register_buffer("z0", z0)
        self.pyro_name = f"{cfg.family}{next(_NAMES)}"

    def reset_parameters(self) -> None:
        """Truncated LeCun init of every Linear, embedding std 1/√D, Q head weight 0 and bias −5 (TRM)."""
        lecun_init_(self)
        nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(self.cfg.D))
        nn.init.zeros_(self.halt_head.weight)
        nn.init.constant_(self.halt_head.bias, -5.0)

    # ------------------------------------------------------------------ GRAM's interface
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Input embedding [..., S, D]: prefix tokens, then tokens × √D (x[..., 0] is a puzzle id if num_puzzles)."""
        prefix = self.prefix
        if self.puzzle_embedding is not None:
            ids, x = x[..., 0], x[..., 1:]
            prefix = prefix + F.pad(self.puzzle_embedding(ids)[..., None, :], (0, 0, 0, self.cfg.n_prefix - 1))
        e = self.embed(x) * math.sqrt(self.cfg.D)
        return torch.cat([prefix.expand(*e.shape[:-2], -1, -1), e], dim=-2)

    def initial_carry(self, batch_shape: torch.Size) -> ACTCarry:
        shape = (*batch_shape, self.cfg.S, self.cfg.D)
        return ACTCarry(self.z0[0].expand(shape), self.z0[1].expand(shape) if self.two_states else None)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return self.decoder(h[..., c.n_prefix : c.n_prefix + c.L_out, :])

    def q_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(q_halt, q_continue) [..., 2] from the first token of h, with gradient (TRM and HRM train the core on it)."""
        return self.halt_head(h[..., 0, :])

    def halt_score(self, q: torch.Tensor) -> torch.Tensor:
        """The logit whose sign halts: q_halt (TRM, URM); HRM overrides with q_halt − q_continue."""
        return q[..., 0]

    def halt_logit(self, h: torch.Tensor) -> torch.Tensor:
        return self.halt_score(self.q_logits(h.detach()))

    def value(self, h: torch.Tensor) -> torch.Tensor:
        """LPRM value head on the detached first token (GRAM's selection, §3.2; not part of the systems)."""
        return torch.sigmoid(self.value_head(h[..., 0, :].detach())).squeeze(-1)

    @contextlib.contextmanager
    def shared_recursion(self):
        """No guide recursion to share: a no-op kept for StepLoss."""
        yield

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def step(self, carry: ACTCarry, e_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One supervision step's recursion: (h, l) from the carry and the input embedding."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Pyro program
    def model(self, x, y=None, carry=None, n_sup=None, step_offset=0, beta=None):
        """p_θ(y | x): ``n_sup`` deterministic supervision steps, y observed per step (or after the last one
        without deep supervision); returns the detached carry.  ``beta`` is accepted and unused (no KL)."""
        c = self.cfg
        register_params(self)
        n_sup = c.N_sup if n_sup is None else n_sup
        last_step = step_offset + n_sup - 1
        e_x = self.encode(x)
        carry = self.initial_carry(x.shape[:-1]) if carry is None else carry
        if self.training and y is not None and carry.halted is None:
            carry = carry._replace(halted=torch.zeros(x.shape[0], dtype=torch.bool, device=x.device))
        with pyro.plate("instance", x.shape[0], dim=-1):
            for n in range(step_offset, step_offset + n_sup):
                if self.detach_steps:
                    carry = carry.detach()
                h, l = self.step(carry, e_x)
                logits, q = self.decode(h), self.q_logits(h)
                pyro.deterministic(f"y_hat_{n}", logits.argmax(-1), event_dim=1)
                pyro.deterministic(f"q_{n}", q, event_dim=1)
                if readout_sites():
                    with torch.no_grad():
                        pyro.deterministic(f"halt_{n}", torch.sigmoid(self.halt_score(q)), event_dim=0)
                        pyro.deterministic(f"value_{n}", self.value(h), event_dim=0)
                if c.deep_supervision or n == last_step:
                    running = True if carry.halted is None else ~carry.halted
                    with poutine.mask(mask=running):
                        pyro.sample(f"y_{n}", dist.Categorical(logits=logits).to_event(1), obs=y)
                carry = ACTCarry(h, l, self._halted(carry.halted, q, n))
        return carry.detach()

    def _halted(self, halted, q, n):
        """Training-time halting; the base systems never halt (no ACT)."""
        return halted

    def guide(self, x, y=None, carry=None, n_sup=None, step_offset=0, beta=None):
        """No latent sites: the guide only registers the network with Pyro."""
        register_params(self)


class ACTBaseline(Baseline):
    """A recursive system with ACT: halting in training (module docstring) and its own halt loss (StepLoss hook)."""

    @torch.no_grad()
    def _halted(self, halted, q, n):
        if halted is None:
            return None
        N = self.cfg.N_sup
        steps = n + 1
        fire = self.halt_score(q) > 0
        min_steps = (torch.rand(q.shape[0], device=q.device) < EXPLORE) * torch.randint(2, N + 1, (q.shape[0],),
                                                                                          device=q.device)
        return halted | (steps >= N) | (fire & (steps >= min_steps))

    def halt_loss(self, model_trace, x, carry_in, reward: torch.Tensor, n: int) -> torch.Tensor:
        """0.5 · BCE(q_halt, correct) over the rows still running (TRM losses.py:85-102; URM the same)."""
        q = model_trace.nodes[f"q_{n}"]["value"]
        return 0.5 * _masked_bce(q[..., 0], reward, _running(carry_in, reward))


def _running(carry_in, like: torch.Tensor) -> torch.Tensor:
    """Weights of the rows that had not halted before this step (all ones at the first step)."""
    if carry_in is None or getattr(carry_in, "halted", None) is None:
        return torch.ones_like(like)
    return (~carry_in.halted).to(like.dtype)


def _masked_bce(logit: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)
