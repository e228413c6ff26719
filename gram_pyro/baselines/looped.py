"""Looped Transformer / Universal Transformer (the paper's "Looped TF" row, gram-paper.md §6.2) as a baseline.

One stack f of ``n_layers`` post-norm blocks applied repeatedly, ``h ← f(h + x)``, T·(K+1) times per
supervision step — the loop count of GRAM's ``flat`` mode — with no noise, no halting and **one update per
trajectory**: the N_sup steps are one unrolled computation with full backpropagation through every loop
(the carry is not detached between steps) and y is observed once, after the last step.  The config must say
``deep_supervision=false`` (``gram train --model looped`` sets it).
"""

from __future__ import annotations

import torch

from gram_pyro.baselines.base import ACTCarry, Baseline
from gram_pyro.layers import Stack


class LoopedTF(Baseline):
    """One state h, carried and decoded."""

    detach_steps = False

    def __init__(self, cfg):
        super().__init__(cfg)
        self.f = Stack(cfg.n_layers, D=cfg.D, D_h=cfg.D_h, S=cfg.S, mixer=cfg.mixer, n_heads=cfg.n_heads,
                       seq_hidden=cfg.seq_hidden)
        self.reset_parameters()

    def step(self, carry: ACTCarry, e_x: torch.Tensor):
        h = carry.h
        for _ in range(self.cfg.T * (self.cfg.K + 1)):
            h = self.f(h + e_x)
        return h, None
