"""Direct Pred (gram-paper.md §6.1–6.2, "Direct Pred (8L)"): a non-recursive Transformer, one forward pass.

``4·n_layers`` post-norm blocks (8 at the paper's n_layers = 2) of the same width D as the recursive models,
applied once to the input embedding; no carry is read (the initial state is ignored) and N_sup = 1 (one
update per batch; ``gram train --model direct`` sets it).  At depth > 1 every step repeats the same answer.
"""

from __future__ import annotations

import torch

from gram_pyro.baselines.base import ACTCarry, Baseline
from gram_pyro.layers import Stack


class DirectPred(Baseline):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.net = Stack(4 * cfg.n_layers, D=cfg.D, D_h=cfg.D_h, S=cfg.S, mixer=cfg.mixer, n_heads=cfg.n_heads,
                         seq_hidden=cfg.seq_hidden)
        self.reset_parameters()

    def step(self, carry: ACTCarry, e_x: torch.Tensor):
        return self.net(e_x), None
