"""TRM, the Tiny Recursive Model (arXiv 2510.04871; baselines-and-data.md §1), as a gram_pyro baseline.

One tiny network ``net`` (``n_layers`` post-norm blocks, the MLP mixer for fixed grids or attention) does both
updates.  One supervision step is ``deep_recursion``: T latent recursions, the first T−1 without gradient::

    latent_recursion:  n times  z ← net(z + y + x);   then  y ← net(y + z)

with TRM's n = ``K`` and T = ``T`` (gram-paper.md §9.1).  The carry (y, z) is detached between supervision
steps; deep supervision makes one optimiser update per step; ACT is halt-only: BCE of q̂_halt against
correctness, halting when q̂_halt > 0 (base.ACTBaseline).  EMA is the trainer's (``optim.ema_decay``).
"""

from __future__ import annotations

import torch

from gram_pyro.baselines.base import ACTBaseline, ACTCarry
from gram_pyro.layers import Stack


class TRM(ACTBaseline):
    """y = the carry's h (decoded), z = its l (latent reasoning)."""

    two_states = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.net = Stack(cfg.n_layers, D=cfg.D, D_h=cfg.D_h, S=cfg.S, mixer=cfg.mixer, n_heads=cfg.n_heads,
                         seq_hidden=cfg.seq_hidden)
        self.reset_parameters()

    def latent_recursion(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor):
        """n = K latent updates z ← net(z + y + x), then the answer update y ← net(y + z) (TRM §4)."""
        for _ in range(self.cfg.K):
            z = self.net(z + y + x)
        return self.net(y + z), z

    def step(self, carry: ACTCarry, e_x: torch.Tensor):
        """``deep_recursion``: T−1 latent recursions without gradient, then one with full backprop."""
        y, z = carry.h, carry.l
        with torch.no_grad():
            for _ in range(self.cfg.T - 1):
                y, z = self.latent_recursion(e_x, y, z)
        return self.latent_recursion(e_x, y, z)
