"""The autoregressive Transformer row of Table 1 (gram-paper.md §6.2) as a gram_pyro baseline.

A decoder-only Transformer over the sequence [prefix ; x ; y_1 .. y_{L−1}] (S + L − 1 tokens, one embedding
table, RoPE positions) with a causal mask, ``2·n_layers`` post-norm blocks of width D.  The hidden state at
position S − 1 + i predicts y_{i+1}, so

    p_θ(y | x) = Π_i Categorical(y_i | decoder(h_{S−1+i}))                 (teacher forcing in training)

and ``model(x, y=None)`` draws y token by token from the same factors (ancestral sampling), so width N in
prior_rollouts / Predictive is N independent samples.  The answer is one Pyro site ``y_{n}`` whose
distribution is :class:`ARAnswer`.  N_sup = 1 (``gram train --model ar`` sets it); the token mixer is always
causal attention (a sequence MLP would see later tokens); there is no carry between steps.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import nn

from gram_pyro.baselines.base import ACTCarry, Baseline
from gram_pyro.layers import Attention, SwiGLU, apply_rope, rms_norm
from gram_pyro.model import readout_sites, register_params


class CausalAttention(Attention):
    """GRAM's RoPE attention with a causal mask (over any prefix of its maximum length)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, (S, D) = x.shape[:-2], x.shape[-2:]
        qkv = self.qkv(x.reshape(-1, S, D)).view(-1, S, 3, self.n_heads, self.head_dim)
        qk = apply_rope(qkv[:, :, :2], self.freqs[:S])
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(o.transpose(1, 2).reshape(*lead, S, D))


class CausalBlock(nn.Module):
    """Post-norm block as gram_pyro.layers.Block, with causal attention."""

    def __init__(self, D: int, D_h: int, S: int, n_heads: int):
        super().__init__()
        self.mixer = CausalAttention(D, n_heads, S)
        self.mlp = SwiGLU(D, D_h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = rms_norm(h + self.mixer(h))
        return rms_norm(h + self.mlp(h))


class ARAnswer(dist.TorchDistribution):
    """p_θ(y | x) of the AR Transformer: ``log_prob`` by teacher forcing, ``sample`` ancestrally (batch [B],
    event [L_out]).  The hidden states of the last value scored or drawn are kept for the decoded sites."""

    arg_constraints = {}

    def __init__(self, net: "ARTransformer", e_x: torch.Tensor):
        self.net, self.e_x, self._seen = net, e_x, []
        super().__init__(batch_shape=e_x.shape[:-2], event_shape=(net.cfg.L_out,), validate_args=False)

    @constraints.dependent_property
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.net.cfg.vocab_size - 1), 1)

    def hidden(self, value: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., S + L − 1, D] of the sequence [x ; value] (computed once per value)."""
        for v, h in self._seen:
            if v is value:
                return h
        h = self.net.core(self.e_x, value[..., :-1])
        self._seen.append((value, h))
        return h

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if sample_shape != torch.Size():
            raise ValueError("ARAnswer draws one answer per row; fold extra samples into the batch")
        y, h = self.net.ancestral(self.e_x)
        self._seen.append((y, h))
        return y

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.net.decode(self.hidden(value))
        return dist.Categorical(logits=logits).log_prob(value).sum(-1)


class ARTransformer(Baseline):
    """Decoder-only model of [x ; y]; the carry's h is the hidden state of the whole sequence."""

    draws_latents = True  # its answer is sampled token by token: the N trajectories of an input differ

    def __init__(self, cfg):
        super().__init__(cfg)
        length = cfg.S + cfg.L_out - 1
        blocks = [CausalBlock(cfg.D, cfg.D_h, length, cfg.n_heads) for _ in range(2 * cfg.n_layers)]
        self.blocks = nn.Sequential(*blocks)
        self.reset_parameters()

    def core(self, e_x: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
        """Hidden states of [e_x ; embedded y_prev] under the causal mask."""
        e_y = self.embed(y_prev) * math.sqrt(self.cfg.D)
        return self.blocks(torch.cat([e_x, e_y], dim=-2))

    @torch.no_grad()
    def ancestral(self, e_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y_1 .. y_L drawn one by one from the decoder (torch's global RNG, seeded by pyro.set_rng_seed)."""
        L = self.cfg.L_out
        y = torch.zeros((*e_x.shape[:-2], L), dtype=torch.long, device=e_x.device)
        for i in range(L):
            h = self.core(e_x, y[..., :i])
            y[..., i] = torch.distributions.Categorical(logits=self.decoder(h[..., -1, :])).sample()
        return y, h

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [..., L_out, V] at positions S − 1 .. S + L − 2 (each predicts the next answer token)."""
        S = self.cfg.S
        return self.decoder(h[..., S - 1 : S - 1 + self.cfg.L_out, :])

    def q_logits(self, h: torch.Tensor) -> torch.Tensor:
        """The Q head reads the last position (the only one that has seen the whole answer)."""
        return self.halt_head(h[..., -1, :])

    def value(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.value_head(h[..., -1, :].detach())).squeeze(-1)

    def model(self, x, y=None, carry=None, n_sup=None, step_offset=0, beta=None):
        """p_θ(y | x) per supervision step: teacher-forced likelihood of ``y``, or an ancestral sample if None."""
        register_params(self)
        n_sup = self.cfg.N_sup if n_sup is None else n_sup
        e_x = self.encode(x)
        with pyro.plate("instance", x.shape[0], dim=-1):
            for n in range(step_offset, step_offset + n_sup):
                answer = ARAnswer(self, e_x)
                v = pyro.sample(f"y_{n}", answer, obs=y)
                h = answer.hidden(v)
                logits, q = self.decode(h), self.q_logits(h)
                pyro.deterministic(f"y_hat_{n}", v if y is None else logits.argmax(-1), event_dim=1)
                pyro.deterministic(f"q_{n}", q, event_dim=1)
                if readout_sites():
                    with torch.no_grad():
                        pyro.deterministic(f"halt_{n}", torch.sigmoid(self.halt_score(q)), event_dim=0)
                        pyro.deterministic(f"value_{n}", self.value(h), event_dim=0)
        return ACTCarry(h.detach())
