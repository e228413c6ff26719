"""HRM, the Hierarchical Reasoning Model (arXiv 2506.21734; baselines-and-data.md §2), as a gram_pyro baseline.

Two modules f_L and f_H of ``2·n_layers`` blocks each (the paper's two 4-layer modules at n_layers = 2, the
width of GRAM's and TRM's 2-layer modules) on two timescales.  One supervision step, with HRM's N = ``T``
high-level cycles of T_L = ``K`` low-level steps (gram-paper.md §9.1)::

    for i = 1 .. N·T_L:   z_L ← f_L(z_L + z_H + x);   every T_L-th i:  z_H ← f_H(z_H + z_L)

One-step gradient: every call runs without gradient except the last f_L and the last f_H call
(hrm_act_v1.py:189-204).  ACT by Q-learning: Q̂ = (q_halt, q_continue) from z_H's first token; halt when
q_halt > q_continue (and m ≥ M_min, exploration 0.1, base.ACTBaseline), or at m = N_sup.  Targets: Ĝ_halt =
1[ŷ correct], Ĝ_continue = σ(q_halt^{m+1}) at the last step, else σ(max(q_halt^{m+1}, q_continue^{m+1})),
from an extra forward pass of the next step; loss CE + 0.5·(BCE_halt + BCE_continue).  No EMA in HRM (the
bench sets ``optim.ema_decay=0`` for it).
"""

from __future__ import annotations

import torch

from gram_pyro.baselines.base import ACTBaseline, ACTCarry, _masked_bce, _running
from gram_pyro.layers import Stack


class HRM(ACTBaseline):
    """z_H = the carry's h (decoded), z_L = its l."""

    two_states = True

    def __init__(self, cfg):
        super().__init__(cfg)
        block = dict(D=cfg.D, D_h=cfg.D_h, S=cfg.S, mixer=cfg.mixer, n_heads=cfg.n_heads, seq_hidden=cfg.seq_hidden)
        self.f_L = Stack(2 * cfg.n_layers, **block)
        self.f_H = Stack(2 * cfg.n_layers, **block)
        self.reset_parameters()

    def halt_score(self, q: torch.Tensor) -> torch.Tensor:
        """Halt when q_halt > q_continue."""
        return q[..., 0] - q[..., 1]

    def step(self, carry: ACTCarry, e_x: torch.Tensor):
        """N·T_L low-level and N high-level updates; only the last f_L and f_H calls carry gradient."""
        c = self.cfg
        z_H, z_L = carry.h, carry.l
        with torch.no_grad():
            for i in range(c.T * c.K - 1):
                z_L = self.f_L(z_L + z_H + e_x)
                if (i + 1) % c.K == 0:
                    z_H = self.f_H(z_H + z_L)
        z_L = self.f_L(z_L + z_H + e_x)
        return self.f_H(z_H + z_L), z_L

    def halt_loss(self, model_trace, x, carry_in, reward: torch.Tensor, n: int) -> torch.Tensor:
        """0.5·(BCE(q_halt, Ĝ_halt) + BCE(q_continue, Ĝ_continue)); Ĝ_continue from one more step (no gradient)."""
        q = model_trace.nodes[f"q_{n}"]["value"]
        carry = model_trace.nodes["_RETURN"]["value"]
        with torch.no_grad():
            h_next, _ = self.step(carry, self.encode(x))
            q_next = self.q_logits(h_next)
            last = n + 1 >= self.cfg.N_sup
            target = torch.sigmoid(q_next[..., 0] if last else q_next.max(-1).values)
        w = _running(carry_in, reward)
        return 0.5 * (_masked_bce(q[..., 0], reward, w) + _masked_bce(q[..., 1], target, w))

