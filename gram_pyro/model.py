"""GRAM as a Pyro program: recursive core, ``model`` and ``guide`` (gram-paper.md §1–2).

Read in this order:

- :meth:`GRAM.transition` — the deterministic recursion (h, l) -> (u, l) of one transition (Eq. 6–7).
- :meth:`GRAM.model` — p_θ(y, τ | x): for each supervision step n and transition t, ε ~ p_θ(ε | u) at the
  latent site ``eps_{n}_{t}`` (Eq. 8) and h = u + ε (Eq. 9); then the decoded answer ``y_hat_{n}``, the
  halting probability ``halt_{n}``, the LPRM value ``value_{n}`` (deterministic sites) and the observed
  ``y_{n}`` ~ Categorical(f_dec(h)).
- :meth:`GRAM.guide` — q_φ(τ | x, y): the same loop, ε from the posterior, which also sees y.

Both serve one supervision step (``carry`` in, carry out: training) and whole trajectories (``n_sup`` steps:
``Predictive``, ``poutine.trace``, ``condition``, ``do``).  Truncation (Eq. 14, §2.3): within a step the first
T−1 transitions run without gradient and are masked out of the KL, and β scales the latent sites; one helper
(``_transition_scope``) enters those for each transition.  ``GRAMConfig.truncated_from`` says where the T−1
truncated transitions' ε comes from: the posterior (the paper's reading), the prior, or a point mass at the
prior's mean.  :class:`SharedRecursion` lets the model reuse the guide's f_L / f_H outputs within one ELBO
evaluation, and :func:`guided_traces` is the guide-trace-then-replay pattern every ELBO evaluation uses.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
from typing import Callable, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from gram_pyro.config import GRAMConfig
from gram_pyro.layers import Stack, SwiGLU, lecun_init_
from gram_pyro.pair_bias import link_matrix
from gram_pyro.priors import GaussianPosterior, LocScaleHead, TransitionPrior, build_prior
from gram_pyro.puzzle_embedding import PuzzleEmbedding

_NAMES = itertools.count()


class Carry(NamedTuple):
    """The latent state z = (h, l) passed between supervision steps (l is None in ``flat`` mode)."""

    h: torch.Tensor
    l: torch.Tensor | None

    def detach(self) -> "Carry":
        return Carry(self.h.detach(), None if self.l is None else self.l.detach())


class GRAM(nn.Module):
    """The GRAM network and its Pyro ``model``/``guide`` (gram-paper.md §1.3, §2.1)."""

    def __init__(self, cfg: GRAMConfig, prior: TransitionPrior | None = None):
        super().__init__()
        self.cfg = cfg
        D, S = cfg.D, cfg.S
        block = dict(D=D, D_h=cfg.D_h, S=S, mixer=cfg.mixer, n_heads=cfg.n_heads, seq_hidden=cfg.seq_hidden,
                     pair_bias=cfg.pair_bias)
        # Encoder e_x (Eq. 1): token embedding x sqrt(D), prefix tokens, RoPE inside attention.
        self.embed = nn.Embedding(cfg.vocab_size, D)
        self.prefix = nn.Parameter(torch.zeros(cfg.n_prefix, D))
        self.puzzle_embedding = PuzzleEmbedding(cfg.num_puzzles, D) if cfg.num_puzzles else None
        self.f_L = None if cfg.mode == "flat" else Stack(cfg.n_layers, **block)
        self.f_H = Stack(cfg.n_layers, **block)
        self.decoder = nn.Linear(D, cfg.vocab_size) if cfg.decoder == "linear" else SwiGLU(D, cfg.D_h, cfg.vocab_size)
        self.halt_head = nn.Linear(D, 1)
        self.value_head = nn.Linear(D, 1)
        self._own_prior = prior is None
        self.prior = (prior or build_prior(cfg)) if cfg.stochastic else None
        self.posterior = GaussianPosterior(cfg) if cfg.stochastic else None
        # Fixed initial state z_0: one N(0, I) draw, saved with the checkpoint (App. B.1).
        z0 = torch.randn(2, D, generator=torch.Generator().manual_seed(cfg.seed))
        self.register_buffer("z0", z0)
        self._recursion: SharedRecursion | None = None
        # A per-instance name keeps two models (e.g. GRAM and its baseline) apart in Pyro's param store.
        self.pyro_name = f"gram{next(_NAMES)}"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every submodule except a prior passed in by the user (it keeps its own init)."""
        for name, child in self.named_children():
            if name == "prior" and not self._own_prior:
                continue
            lecun_init_(child)
            for m in child.modules():
                if isinstance(m, LocScaleHead):
                    m.reset_parameters()
        nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(self.cfg.D))
        nn.init.zeros_(self.halt_head.weight)
        nn.init.constant_(self.halt_head.bias, -5.0)  # TRM's Q-head init: no early halting at start

    # ------------------------------------------------------------------ deterministic pieces
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """e_x = f_enc(x) (Eq. 1): [..., seq_len] tokens -> [..., S, D].  With ``num_puzzles`` > 0, x[..., 0] is
        the puzzle identifier; its learned embedding is added to the first prefix token (§1.4)."""
        prefix = self.prefix
        if self.puzzle_embedding is not None:
            ids, x = x[..., 0], x[..., 1:]
            rows = self.puzzle_embedding(ids)[..., None, :]
            prefix = prefix + nn.functional.pad(rows, (0, 0, 0, self.cfg.n_prefix - 1))
        e = self.embed(x) * math.sqrt(self.cfg.D)
        return torch.cat([prefix.expand(*e.shape[:-2], -1, -1), e], dim=-2)

    @property
    def draws_latents(self) -> bool:
        """Whether a prior rollout draws ε (Eq. 8), so that the N trajectories of one input differ (§3.1); the
        deterministic recursion draws none, and :func:`~gram_pyro.inference.prior_rollouts` runs it once per input."""
        return self.cfg.stochastic

    def initial_carry(self, batch_shape: torch.Size) -> Carry:
        """z_0 broadcast to every instance and position."""
        shape = (*batch_shape, self.cfg.S, self.cfg.D)
        l0 = None if self.cfg.mode == "flat" else self.z0[1].expand(shape)
        return Carry(self.z0[0].expand(shape), l0)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """f_dec(h): logits [..., L_out, V] from the content positions of h (the decoder reads h only)."""
        c = self.cfg
        return self.decoder(h[..., c.n_prefix : c.n_prefix + c.L_out, :])

    def halt_logit(self, h: torch.Tensor) -> torch.Tensor:
        """q_halt from the first token of a detached h (§2.5)."""
        return self.halt_head(h[..., 0, :].detach()).squeeze(-1)

    def value(self, h: torch.Tensor) -> torch.Tensor:
        """LPRM value v_ψ(h) ∈ [0, 1] from the first token of a detached h (§3.2)."""
        return torch.sigmoid(self.value_head(h[..., 0, :].detach())).squeeze(-1)

    def transition_prior(self, u: torch.Tensor, t: int) -> dist.Distribution:
        """p_θ(ε_t | u_t); override in a subclass, or pass ``prior=`` (see ``gram_pyro.priors``)."""
        return self.prior(u, t)

    def transition_prior_mean(self, u: torch.Tensor, t: int) -> torch.Tensor:
        """The mean of p_θ(ε_t | u_t), what a truncated transition adds under ``truncated_from="prior_mean"``.

        A built-in prior gives it without its σ head (``TransitionPrior.mean``); a subclass that overrides
        :meth:`transition_prior` gets the mean of the distribution it returns.
        """
        if type(self).transition_prior is GRAM.transition_prior:
            return self.prior.mean(u, t)
        return self.transition_prior(u, t).mean

    def transition(self, h: torch.Tensor, l: torch.Tensor | None, e_x: torch.Tensor, links: torch.Tensor | None = None):
        """The deterministic part of one transition, (h, l) -> (u, l) (Eq. 6–7).

        ``K`` low-level refinements with h fixed (Eq. 6), then the high-level proposal u (Eq. 7).  In ``flat``
        mode (no l) one stack is applied ``K + 1`` times.  The stochastic step, ε from p_θ(ε | u) (model) or
        q_φ(ε | u, y) (guide) and h = u + ε (Eq. 8–9), is written out where it is sampled, in :meth:`model`
        and :meth:`guide`.  ``links`` is the input's link matrix for a pair-biased attention (``model.pair_bias``,
        gram_pyro/pair_bias.py; None otherwise).
        """
        if l is None:
            u = h
            for _ in range(self.cfg.K + 1):
                u = self.f_H(u + e_x, links)
            return u, None
        for _ in range(self.cfg.K):
            l = self.f_L(l + h + e_x, links)  # Eq. 6
        return self.f_H(h + l, links), l  # Eq. 7

    # ------------------------------------------------------------------ Pyro program
    def model(self, x, y=None, carry=None, n_sup=None, step_offset=0, beta=None):
        """p_θ(y, τ | x) (§2.1): ``n_sup`` supervision steps of T transitions, then y given the last h.

        ``y=None`` samples answers (prior rollouts).  Returns the detached carry for the next call.
        """
        c = self.cfg
        n_sup = c.N_sup if n_sup is None else n_sup
        beta = c.beta if beta is None else beta
        register_params(self)
        e_x, links = self._encode(x)
        carry = self.initial_carry(x.shape[:-1]) if carry is None else carry
        scope = self._transition_scope(beta)
        with pyro.plate("instance", x.shape[0], dim=-1):
            for n in range(step_offset, step_offset + n_sup):
                carry = carry.detach()  # truncated BPTT across supervision steps (§2.3)
                for t in range(c.T):
                    with scope(t):
                        u, l = self._propose((n, t), carry, e_x, links)
                        if c.stochastic:
                            eps = pyro.sample(f"eps_{n}_{t}", self._model_prior(u, n * c.T + t, t == c.T - 1))  # Eq. 8
                            u = self._next_h(n * c.T + t, u, eps)  # Eq. 9
                        carry = Carry(u, l)
                logits = self.decode(carry.h)
                pyro.deterministic(f"y_hat_{n}", logits.argmax(-1), event_dim=1)
                if readout_sites():
                    with torch.no_grad():  # read-outs of a detached h, [B]: batch dimension only
                        pyro.deterministic(f"halt_{n}", torch.sigmoid(self.halt_logit(carry.h)), event_dim=0)
                        pyro.deterministic(f"value_{n}", self.value(carry.h), event_dim=0)
                if c.deep_supervision or n == step_offset + n_sup - 1:
                    pyro.sample(f"y_{n}", dist.Categorical(logits=logits).to_event(1), obs=y)  # p_θ(y | z_T^(n))
        return carry.detach()

    def guide(self, x, y, carry=None, n_sup=None, step_offset=0, beta=None):
        """q_φ(τ | x, y) (§2.2): the same transitions with ε from the posterior, which also sees y.

        The T−1 truncated transitions of a step draw ε from where ``truncated_from`` says: the posterior (the
        paper's reading), the prior, or the prior's mean (docs/model.md, "Truncation").
        """
        c = self.cfg
        register_params(self)
        if not c.stochastic:  # no latent sites: nothing to guide
            return None
        n_sup = c.N_sup if n_sup is None else n_sup
        beta = c.beta if beta is None else beta
        e_x, links = self._encode(x)
        e_y = self.posterior.target_embedding(y)
        carry = self.initial_carry(x.shape[:-1]) if carry is None else carry
        scope = self._transition_scope(beta)
        with pyro.plate("instance", x.shape[0], dim=-1):
            for n in range(step_offset, step_offset + n_sup):
                carry = carry.detach()
                for t in range(c.T):
                    with scope(t):
                        u, l = self._propose((n, t), carry, e_x, links)
                        if t == c.T - 1 or c.truncated_from == "posterior":
                            q = self.posterior(u, e_y)  # q_φ(ε | u, y)
                        else:
                            q = self._model_prior(u, n * c.T + t, last=False)
                        carry = Carry(self._next_h(n * c.T + t, u, pyro.sample(f"eps_{n}_{t}", q)), l)  # Eq. 8–9
        return carry.detach()

    # ------------------------------------------------------------------ helpers of model and guide
    def _transition_scope(self, beta: float):
        """``scope(t)`` enters what transition t of a supervision step runs under (Eq. 14, §2.3).

        Only the last transition (t = T−1) keeps the gradient and its KL; the T−1 before it run without
        gradient and are masked out of the ELBO (``poutine.mask``).  β scales the latent sites
        (``poutine.scale``).  Observed sites are outside the scope.  A handler that would change nothing (the
        last transition's mask, β = 1) is not entered: fewer messengers per site (issue 18).
        """
        grad = torch.is_grad_enabled()

        @contextlib.contextmanager
        def scope(t: int):
            last = t == self.cfg.T - 1
            mask = contextlib.nullcontext() if last else poutine.mask(mask=False)
            scale = contextlib.nullcontext() if beta == 1.0 else poutine.scale(scale=beta)
            with torch.set_grad_enabled(grad and last), mask, scale:
                yield

        return scope

    def _model_prior(self, u: torch.Tensor, i: int, last: bool) -> dist.Distribution:
        """The model's distribution of ε at transition i: p_θ(ε | u), except that with
        ``truncated_from="prior_mean"`` a truncated transition is a point mass at the prior's mean (no noise)."""
        if last or self.cfg.truncated_from != "prior_mean":
            return self._shared("prior", i, u, lambda: self.transition_prior(u, i))
        mean = self._shared("prior_mean", i, u, lambda: self.transition_prior_mean(u, i))
        return dist.Delta(mean, event_dim=2)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(e_x, the link matrix of a pair-biased attention or None), once per x inside ``shared_recursion``."""
        compute = lambda x: (self.encode(x), link_matrix(x, self.cfg))  # noqa: E731
        return compute(x) if self._recursion is None else self._recursion.encode(x, compute)

    def _propose(self, key, carry: "Carry", e_x: torch.Tensor, links: torch.Tensor | None):
        compute = lambda: self.transition(carry.h, carry.l, e_x, links)  # noqa: E731
        return compute() if self._recursion is None else self._recursion.propose(key, carry, compute)

    def _shared(self, kind: str, i: int, u: torch.Tensor, compute):
        return compute() if self._recursion is None else self._recursion.reuse(kind, i, (u,), compute)

    def _next_h(self, i: int, u: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """h = u + ε (Eq. 9) of transition i; the model reuses the guide's sum when u and ε are the same objects
        (``shared_recursion``: the model replays the guide's ε), so the next transition finds the guide's state."""
        compute = lambda: u + eps  # noqa: E731
        return compute() if self._recursion is None else self._recursion.reuse("h", i, (u, eps), compute)

    @contextlib.contextmanager
    def shared_recursion(self):
        """Within this context the model reuses what the guide computed for the same inputs (:class:`SharedRecursion`)."""
        self._recursion = SharedRecursion()
        try:
            yield
        finally:
            self._recursion = None

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class SharedRecursion:
    """What the model reuses from the guide within one ELBO evaluation (``GRAM.shared_recursion``).

    Model and guide run the same deterministic recursion: the guide goes first (``poutine.replay``), and the
    model then finds e_x for the same x, (u, l) for transition (n, t) when its input state (h, l) is the one
    the guide had (it differs after a transition whose ε came from a different distribution), the prior (or its
    mean) for the same u object, and h = u + ε for the same u and ε objects.  So an ELBO step computes f_L / f_H
    once, and the model's state after a transition is the guide's tensor (no comparison of values).
    """

    def __init__(self):
        self._x = self._e_x = None
        self._proposals: dict[tuple[int, int], tuple[Carry, tuple]] = {}
        self._reused: dict[tuple[str, int], tuple[tuple[torch.Tensor, ...], object]] = {}

    def encode(self, x: torch.Tensor, compute: Callable):
        if self._x is None or not _same_values(self._x, x):
            self._x, self._e_x = x, compute(x)
        return self._e_x

    def propose(self, key: tuple[int, int], carry: Carry, compute: Callable) -> tuple:
        hit = self._proposals.get(key)
        if hit is not None and _same_state(hit[0], carry):
            return hit[1]
        out = compute()
        self._proposals.setdefault(key, (carry, out))
        return out

    def reuse(self, kind: str, i: int, inputs: tuple[torch.Tensor, ...], compute: Callable):
        """``compute()``'s result for ``kind`` at transition i, computed again unless ``inputs`` are the same
        objects as last time."""
        hit = self._reused.get((kind, i))
        if hit is not None and len(hit[0]) == len(inputs) and all(a is b for a, b in zip(hit[0], inputs)):
            return hit[1]
        out = compute()
        self._reused[(kind, i)] = (inputs, out)
        return out


_UPDATE_PROGRAM = contextvars.ContextVar("gram_update_program", default=False)


def register_params(module: nn.Module) -> None:
    """``pyro.module``: every parameter of ``module`` a param site of the running trace, which is how Pyro's
    optimisers (``pyro.infer.SVI``) find them.  Skipped inside :func:`update_program`."""
    if not _UPDATE_PROGRAM.get():
        pyro.module(module.pyro_name, module)


def readout_sites() -> bool:
    """Whether the model records its read-outs of h (the ``halt_{n}`` and ``value_{n}`` deterministic sites that
    prior rollouts return): everywhere but inside :func:`update_program`."""
    return not _UPDATE_PROGRAM.get()


@contextlib.contextmanager
def update_program():
    """Run model and guide as one optimiser update of ``gram_pyro.update.StepLoss`` needs them (issue 18: Python
    work per update): no ``pyro.param`` sites (its torch optimiser steps ``module.parameters()`` directly; ~30 calls
    per program) and no halt/value read-out sites (StepLoss fits those heads on the carry itself).  Losses and
    gradients are unchanged; ``pyro.infer.SVI`` and ``Predictive`` see the full program."""
    token = _UPDATE_PROGRAM.set(True)
    try:
        yield
    finally:
        _UPDATE_PROGRAM.reset(token)


def _same_state(a: Carry, b: Carry) -> bool:
    return _same_values(a.h, b.h) and (a.l is None or _same_values(a.l, b.l))


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``torch.equal``, without reading the values when both are the same view of the same memory (a carry
    detached twice: guide and model start a step from one tensor)."""
    same_view = (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
                 and a.dtype == b.dtype and a.device == b.device)
    return same_view or torch.equal(a, b)


def guided_traces(model: Callable, guide: Callable, *args, **kwargs) -> tuple[poutine.Trace, poutine.Trace]:
    """(model trace, guide trace): the guide traced, then the model replayed on the guide's ε (§2.2).

    The pattern behind every ELBO evaluation (``gram_pyro.elbo``), the per-instance ELBO of the analysis and
    the guide accuracy of the benchmarks.
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace
