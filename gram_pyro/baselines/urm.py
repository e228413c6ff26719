"""URM, the Universal Reasoning Model (arXiv 2512.14693; baselines-and-data.md §4), as a gram_pyro baseline.

A Universal Transformer: one state h and one shared stack of ``2·n_layers`` post-norm blocks (URM's 4 layers
for Sudoku at n_layers = 2) whose channel MLP is a ConvSwiGLU — SwiGLU, then a depthwise convolution of
kernel 2 over the sequence after the gating, then SiLU, then the down projection (URM layers.py:153-187).
One supervision step is H = ``T`` cycles of L = ``K`` loops ``h ← layers(h + x)``; truncated backpropagation
through loops: the first (T−1)·K loops run forward only, the last K with gradient (urm.py:142-167).
ACT as TRM's (halt when q_halt > 0, exploration 0.1); EMA is the trainer's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gram_pyro.baselines.base import ACTBaseline, ACTCarry
from gram_pyro.layers import Attention, SequenceMLP, rms_norm


class ConvSwiGLU(nn.Module):
    """``down(silu(dwconv(silu(gate) · up)))`` with a depthwise conv of ``kernel`` taps over the sequence axis."""

    def __init__(self, D: int, D_h: int, kernel: int = 2):
        super().__init__()
        self.w13 = nn.Linear(D, 2 * D_h, bias=False)
        self.dwconv = nn.Conv1d(D_h, D_h, kernel_size=kernel, padding=kernel // 2, groups=D_h, bias=True)
        self.w2 = nn.Linear(D_h, D, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w13(x).chunk(2, dim=-1)
        g = F.silu(a) * b
        lead, (S, H) = g.shape[:-2], g.shape[-2:]
        conv = self.dwconv(g.reshape(-1, S, H).transpose(1, 2))[..., :S]  # position t sees t−1 and t
        return self.w2(F.silu(conv.transpose(1, 2)).reshape(*lead, S, H))


class URMBlock(nn.Module):
    """Post-norm block: ``h = rms(h + mixer(h)); h = rms(h + ConvSwiGLU(h))``."""

    def __init__(self, cfg):
        super().__init__()
        self.mixer = (Attention(cfg.D, cfg.n_heads, cfg.S) if cfg.mixer == "attention"
                      else SequenceMLP(cfg.S, cfg.seq_hidden))
        self.mlp = ConvSwiGLU(cfg.D, cfg.D_h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = rms_norm(h + self.mixer(h))
        return rms_norm(h + self.mlp(h))


class URM(ACTBaseline):
    """One state h, carried and decoded."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.layers = nn.Sequential(*[URMBlock(cfg) for _ in range(2 * cfg.n_layers)])
        self.reset_parameters()

    def step(self, carry: ACTCarry, e_x: torch.Tensor):
        """(T−1)·K forward-only loops, then K loops with gradient; each loop is h ← layers(h + x)."""
        h = carry.h
        with torch.no_grad():
            for _ in range((self.cfg.T - 1) * self.cfg.K):
                h = self.layers(h + e_x)
        for _ in range(self.cfg.K):
            h = self.layers(h + e_x)
        return h, None
