"""Building blocks of f_L, f_H and the heads (gram-paper.md §1.4; TRM layout, baselines-and-data.md §1.2).

Post-norm blocks with a gain-free RMSNorm: ``x = rms(x + mixer(x)); x = rms(x + SwiGLU(x))``, so every
stack ends with an RMSNorm (gram-paper.md §7, practical warning).  The mixer is non-causal self-attention
with RoPE, or a SwiGLU over the sequence axis (the "MLP-mixer" Sudoku core).  All modules accept any
number of leading batch dimensions (``[..., S, D]``), so width N can be folded into the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), eps=eps)


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) * w3 x)``; ``bias`` only on the output layer (used by the Gaussian heads)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int | None = None, out_bias: bool = False):
        super().__init__()
        self.w13 = nn.Linear(d_in, 2 * d_hidden, bias=False)
        self.w2 = nn.Linear(d_hidden, d_out or d_in, bias=out_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            # Training: w1 x and w3 x as two matmuls on the halves of w13's weight, so the backward pass does not
            # concatenate their gradients (issue 18, docs/results.md)
            w1, w3 = self.w13.weight.chunk(2, dim=0)
            return self.w2(F.silu(F.linear(x, w1)) * F.linear(x, w3))
        # Rollouts (no autograd): one matmul and the gate in place on its output, the same values with two fewer
        # temporaries of the block's largest activation (issue 18: elementwise passes and allocation churn)
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(a, inplace=True).mul_(b))


def rope_freqs(S: int, head_dim: int, theta: float = 1e4) -> torch.Tensor:
    """Unit complex rotations [S, head_dim / 2] for rotary position embedding (channel pairs (2i, 2i+1))."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ang = torch.outer(torch.arange(S, dtype=torch.float32), inv)
    return torch.polar(torch.ones_like(ang), ang)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of ``x`` [..., hd] by ``freqs`` (broadcast to x's shape without the last dim).

    One complex multiply on a view of x (no copies of q/k): measured 22 % faster than the
    rotate-half form for attention forward + backward at D = 64 on a CPU.
    """
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs).flatten(-2).type_as(x)


PAIR_WEIGHT_INIT = 1.0
"""Initial per-head weight of the link bias: at init a linked key gets e ≈ 2.7 times its plain attention weight,
so routing by the input starts at the first update instead of after w has grown from 0 (issue 16)."""


class Attention(nn.Module):
    """Non-causal multi-head self-attention with RoPE (no biases), via scaled_dot_product_attention.

    With ``pair_bias`` the logits get ``w_head * A`` for a link matrix A [..., S, S] passed to ``forward``
    (gram_pyro/pair_bias.py; issue 16, not in the paper): one learned scalar per head.
    """

    def __init__(self, D: int, n_heads: int, S: int, pair_bias: bool = False):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, D // n_heads
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.out = nn.Linear(D, D, bias=False)
        self.register_buffer("freqs", rope_freqs(S, self.head_dim)[:, None, None, :], persistent=False)
        self.pair_weight = nn.Parameter(torch.full((n_heads,), PAIR_WEIGHT_INIT)) if pair_bias else None

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        lead, (S, D) = x.shape[:-2], x.shape[-2:]
        qkv = self.qkv(x.reshape(-1, S, D)).view(-1, S, 3, self.n_heads, self.head_dim)
        qk = apply_rope(qkv[:, :, :2], self.freqs)  # q and k rotated together: [B, S, 2, H, hd]
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=self._logit_bias(attn_bias, lead, S, q.dtype))
        return self.out(o.transpose(1, 2).reshape(*lead, S, D))

    def _logit_bias(self, links: torch.Tensor | None, lead: torch.Size, S: int, dtype) -> torch.Tensor | None:
        """``w_head * A`` as a float attention mask [B, H, S, S]; A broadcasts to x's leading dimensions."""
        if links is None:
            return None
        if self.pair_weight is None:
            raise ValueError("a link matrix was passed to an attention layer built without pair_bias")
        A = links.expand(*lead, S, S).reshape(-1, 1, S, S)
        return (A * self.pair_weight.view(1, -1, 1, 1)).to(dtype)


class SequenceMLP(nn.Module):
    """SwiGLU over the sequence axis (position-aware token mixing; TRM's ``mlp_t`` core)."""

    def __init__(self, S: int, hidden: int):
        super().__init__()
        self.mlp = SwiGLU(S, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one explicit copy of the transposed input (a matmul would make it anyway), so that SwiGLU's two training
        # matmuls do not copy it twice
        return self.mlp(x.transpose(-1, -2).contiguous()).transpose(-1, -2)


class Block(nn.Module):
    """Post-norm block: token mixer then SwiGLU channel MLP, each followed by a gain-free RMSNorm.

    ``pair_bias`` (attention mixer only) gives the attention a learned link-bias weight per head; ``forward``'s
    ``attn_bias`` is then the link matrix A [..., S, S] of ``gram_pyro.pair_bias.link_matrix`` (or None).
    """

    def __init__(self, D: int, D_h: int, S: int, mixer: str, n_heads: int, seq_hidden: int, pair_bias: bool = False):
        super().__init__()
        if pair_bias and mixer != "attention":
            raise ValueError("pair_bias needs the attention mixer (the sequence MLP has no logits to bias)")
        self.mixer = Attention(D, n_heads, S, pair_bias) if mixer == "attention" else SequenceMLP(S, seq_hidden)
        self.mlp = SwiGLU(D, D_h)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = rms_norm(x + (self.mixer(x) if attn_bias is None else self.mixer(x, attn_bias)))
        return rms_norm(x + self.mlp(x))


class Stack(nn.Sequential):
    """``n_layers`` blocks: the architecture shared by f_L and f_H (gram-paper.md §1.4); ``attn_bias`` (the link
    matrix A, or None) reaches every block's attention."""

    def __init__(self, n_layers: int, **block_kwargs):
        super().__init__(*[Block(**block_kwargs) for _ in range(n_layers)])

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        for block in self:
            x = block(x, attn_bias)
        return x


def lecun_init_(module: nn.Module) -> None:
    """Truncated LeCun-normal init of every Linear weight (TRM, baselines-and-data.md §1.2)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            std = 1.0 / math.sqrt(m.in_features)
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, Attention) and m.pair_weight is not None:
            nn.init.constant_(m.pair_weight, PAIR_WEIGHT_INIT)
