"""GRAM as a Pyro program: recursive core, ``model`` and ``guide`` (gram-paper.md §1–2).

One transition (Eq. 6–9) lives in :meth:`GRAM.transition`.  ``model(x, y)`` is the generative process
p_θ(y, τ | x): per supervision step n and transition t a latent site ``eps_{n}_{t}`` drawn from the
transition prior, then an observed categorical site ``y_{n}`` and deterministic sites ``y_hat_{n}``
(decoded answer), ``halt_{n}`` (halting probability) and ``value_{n}`` (LPRM value).  ``guide(x, y)``
is q_φ(τ | x, y) with the same sites drawn from the posterior.  Both serve one supervision step
(``carry`` in, carry out; training) and whole trajectories (``n_sup`` steps; Predictive, trace,
condition, do).

Truncation (Eq. 14, §2.3): within a supervision step the first T−1 transitions run without gradient
and are masked out of the KL (``poutine.mask``); the carry is detached at every step boundary.  β
scales the latent sites in both model and guide (``poutine.scale``).  ``GRAMConfig.truncated_from`` says
where those T−1 transitions' ε comes from: the posterior (the paper's reading), the prior, or a point
mass at the prior mean, the last making the first T−1 transitions deterministic in the model too.

Inside :meth:`shared_recursion` the guide records each transition's deterministic part (u, l) and the
model reuses it when its input state is identical, so an ELBO step computes f_L/f_H once.
"""

from __future__ import annotations

import contextlib
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
        block = dict(D=D, D_h=cfg.D_h, S=S, mixer=cfg.mixer, n_heads=cfg.n_heads, seq_hidden=cfg.seq_hidden)
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
        self._cache: dict | None = None
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

    def transition(
        self, carry: Carry, e_x: torch.Tensor, draw_eps: Callable[[torch.Tensor], torch.Tensor | None], key=None
    ) -> Carry:
        """One transition z_{t-1} -> z_t (Eq. 6–9).  ``draw_eps(u)`` samples ε (None: deterministic)."""
        h, l = carry
        cached = self._lookup(key, carry)
        if cached is not None:
            u, l = cached
        elif l is None:  # flat looped transformer: one stack, K + 1 applications
            u = h
            for _ in range(self.cfg.K + 1):
                u = self.f_H(u + e_x)
        else:
            for _ in range(self.cfg.K):
                l = self.f_L(l + h + e_x)  # Eq. 6: low-level refinement with h fixed
            u = self.f_H(h + l)  # Eq. 7: deterministic high-level proposal
        self._store(key, carry, (u, l))
        eps = draw_eps(u)  # Eq. 8: ε ~ p_θ(ε | u) in the model, q_φ(ε | u, y) in the guide
        return Carry(u if eps is None else u + eps, l)  # Eq. 9: h = u + ε

    # ------------------------------------------------------------------ shared recursion cache
    @contextlib.contextmanager
    def shared_recursion(self):
        """Within this context the model reuses the guide's (u, l) for identical input states."""
        self._cache = {}
        try:
            yield
        finally:
            self._cache = None

    def _lookup(self, key, carry: Carry):
        if self._cache is None or key not in self._cache:
            return None
        (h0, l0), out = self._cache[key]
        same = torch.equal(h0, carry.h) and (l0 is None or torch.equal(l0, carry.l))
        return out if same else None

    def _store(self, key, carry: Carry, out) -> None:
        if self._cache is not None and key is not None and key not in self._cache:
            self._cache[key] = (carry, out)

    def _shared_prior(self, u: torch.Tensor, t: int) -> dist.Distribution:
        """p_θ(ε_t | u_t), computed once per transition inside ``shared_recursion``: when the guide draws a
        truncated transition from the prior, the model scores the same u (the cached one) with it."""
        hit = None if self._cache is None else self._cache.get(("prior", t))
        if hit is not None and hit[0] is u:
            return hit[1]
        d = self.transition_prior(u, t)
        if self._cache is not None:
            self._cache[("prior", t)] = (u, d)
        return d

    def _truncated_dist(self, u: torch.Tensor, t: int) -> dist.Distribution:
        """ε of a truncated (not last) transition in the model, and in the guide unless drawn from the posterior:
        the prior, or with ``truncated_from="prior_mean"`` a point mass at its mean (no noise there at all)."""
        d = self._shared_prior(u, t)
        return dist.Delta(d.mean, event_dim=d.event_dim) if self.cfg.truncated_from == "prior_mean" else d

    def _encode_shared(self, x: torch.Tensor) -> torch.Tensor:
        if self._cache is not None and "e_x" in self._cache and torch.equal(self._cache["e_x"][0], x):
            return self._cache["e_x"][1]
        e_x = self.encode(x)
        if self._cache is not None:
            self._cache["e_x"] = (x, e_x)
        return e_x

    # ------------------------------------------------------------------ Pyro program
    def _trajectory(self, x, carry, n_sup, step_offset, beta, site_dist, after_step) -> Carry:
        """Run ``n_sup`` supervision steps of T transitions each; shared by model and guide."""
        c = self.cfg
        pyro.module(self.pyro_name, self)
        e_x = self._encode_shared(x)
        carry = self.initial_carry(x.shape[:-1]) if carry is None else carry
        grad = torch.is_grad_enabled()
        with pyro.plate("instance", x.shape[0], dim=-1):
            for n in range(step_offset, step_offset + n_sup):
                carry = carry.detach()  # truncated BPTT across supervision steps
                for t in range(c.T):
                    last = t == c.T - 1
                    name = f"eps_{n}_{t}"

                    def draw(u, n=n, t=t, last=last, name=name):
                        if not c.stochastic:
                            return None
                        with poutine.mask(mask=last), poutine.scale(scale=beta):
                            return pyro.sample(name, site_dist(u, n * c.T + t, last))

                    with torch.set_grad_enabled(grad and last):
                        carry = self.transition(carry, e_x, draw, key=(n, t))
                after_step(n, carry)
        return carry.detach()

    def model(self, x, y=None, carry=None, n_sup=None, step_offset=0, beta=None):
        """p_θ(y, τ | x).  ``y=None`` samples answers (prior rollouts); returns the detached carry."""
        c = self.cfg
        n_sup = c.N_sup if n_sup is None else n_sup
        last_step = step_offset + n_sup - 1

        def observe(n, carry):
            logits = self.decode(carry.h)
            pyro.deterministic(f"y_hat_{n}", logits.argmax(-1), event_dim=1)
            with torch.no_grad():
                pyro.deterministic(f"halt_{n}", torch.sigmoid(self.halt_logit(carry.h)), event_dim=0)  # [B]: batch
                pyro.deterministic(f"value_{n}", self.value(carry.h), event_dim=0)
            if c.deep_supervision or n == last_step:
                pyro.sample(f"y_{n}", dist.Categorical(logits=logits).to_event(1), obs=y)

        beta = c.beta if beta is None else beta
        prior = lambda u, t, last: self._shared_prior(u, t) if last else self._truncated_dist(u, t)  # noqa: E731
        return self._trajectory(x, carry, n_sup, step_offset, beta, prior, observe)

    def guide(self, x, y, carry=None, n_sup=None, step_offset=0, beta=None):
        """q_φ(τ | x, y): the same transitions with ε from the posterior, which also sees y."""
        c = self.cfg
        n_sup = c.N_sup if n_sup is None else n_sup
        beta = c.beta if beta is None else beta
        if not c.stochastic:  # no latent sites: nothing to guide
            pyro.module(self.pyro_name, self)
            return None
        e_y = self.posterior.target_embedding(y)

        def site_dist(u, t, last):  # truncated transitions: posterior, prior or prior mean (docs/model.md)
            if last or c.truncated_from == "posterior":
                return self.posterior(u, e_y)
            return self._truncated_dist(u, t)

        return self._trajectory(x, carry, n_sup, step_offset, beta, site_dist, lambda n, z: None)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
