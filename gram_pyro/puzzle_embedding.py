"""Per-puzzle learned embeddings in the prefix, with sparse sign-SGD updates (gram-paper.md §1.4, §6.5).

ARC conditions every (augmented) puzzle on a learned vector placed in the 16 prefix tokens (§1.4).  As in
TRM (``models/sparse_embedding.py``, baselines-and-data.md §1.2): the table starts at zero, is a buffer,
not a parameter (no AdamW state, no gradient clipping; the EMA copies it, ``gram_pyro.update.EMA``), and
each update touches only the rows of its batch: the rows are looked up into a fresh leaf tensor that
receives the gradient, and :meth:`step` applies sign-SGD with decoupled weight decay to those rows alone
(TRM: lr 1e-2 for ARC).  Memory is the table itself; the per-update state is one row per batch element.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class PuzzleEmbedding(nn.Module):
    """A ``[num_puzzles, D]`` table; identifier 0 is the blank puzzle (it stays zero unless trained)."""

    def __init__(self, num_puzzles: int, D: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(num_puzzles, D))
        self._looked_up: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``[..., D]`` for integer ``ids``; in training with gradients on, a leaf that collects them."""
        rows = self.weight[ids]
        if self.training and torch.is_grad_enabled():
            rows = rows.detach().requires_grad_(True)
            self._looked_up.append((ids.detach().reshape(-1), rows))
        return rows

    def discard(self) -> None:
        """Forget this update's looked-up rows (a skipped update)."""
        self._looked_up.clear()

    @torch.no_grad()
    def step(self, lr: float, weight_decay: float) -> None:
        """Sign-SGD on the rows used since the last step: ``w <- w (1 - lr wd) - lr sign(sum of grads)``.

        Gradients of a row used several times are summed first; under ``torch.distributed`` the rows and
        gradients of every process are gathered, so every process applies the same update.
        """
        used = [(i, r.grad.reshape(-1, r.shape[-1])) for i, r in self._looked_up if r.grad is not None]
        self._looked_up.clear()
        if not used:
            return
        ids = torch.cat([i for i, _ in used])
        grads = torch.cat([g for _, g in used]).to(self.weight.dtype)
        if dist.is_initialized() and dist.get_world_size() > 1:
            ids, grads = _gather(ids), _gather(grads)
        uniq, inv = torch.unique(ids, return_inverse=True)
        total = torch.zeros(len(uniq), self.weight.shape[1], dtype=grads.dtype, device=grads.device)
        total.index_add_(0, inv, grads)
        rows = self.weight[uniq] * (1.0 - lr * weight_decay) - lr * torch.sign(total)
        self.weight[uniq] = rows


def _gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor of equal shape from every process."""
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)
