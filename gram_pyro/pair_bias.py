"""Input-dependent pair structure for attention: the link matrix A (issue 16; not in the paper).

The paper's mixers (gram-paper.md §1.4: RoPE attention or the sequence MLP) route information between
positions by content and position only.  Some tasks state which positions belong together in the input
itself: in graph colouring an edge token says that two vertices' colours must differ, so each vertex needs
to read its neighbours.  ``GRAMConfig.pair_tokens`` lists (p, a, b): the input token x[..., p], when it equals
``GRAMConfig.pair_token_value``, links content positions a and b.  :func:`link_matrix` turns a batch of
inputs into the symmetric 0/1 matrix A [..., S, S] over the latent sequence (prefix positions never linked),
and every ``layers.Attention`` adds ``w_head * A`` to its logits (a learned scalar per head and layer).  The
core knows no task: the task supplies the triples (``pair_structure()``), the CLI copies them into the config.
"""

from __future__ import annotations

import torch

from gram_pyro.config import GRAMConfig


def link_matrix(x: torch.Tensor, cfg: GRAMConfig) -> torch.Tensor | None:
    """A [..., S, S] (float, symmetric, 0/1) from input tokens ``x`` [..., seq_len]; None when ``pair_bias`` is off.

    Position p indexes ``x`` as given (with ``num_puzzles`` > 0 column 0 is the puzzle identifier); a and b are
    content positions, i.e. latent positions ``n_prefix + a`` and ``n_prefix + b``.
    """
    if not cfg.pair_bias:
        return None
    if not cfg.pair_tokens:
        raise ValueError("pair_bias=true but pair_tokens is empty: the task's pair structure was not filled in "
                         "(gram_cli fills it from the task's pair_structure())")
    S = cfg.S
    p, a, b = torch.tensor(cfg.pair_tokens, device=x.device).unbind(-1)
    on = (x[..., p] == cfg.pair_token_value).to(torch.float32)  # [..., m]
    a, b = a + cfg.n_prefix, b + cfg.n_prefix
    cells = torch.cat([a * S + b, b * S + a])  # both orientations: A is symmetric
    flat = torch.zeros(*x.shape[:-1], S * S, device=x.device).index_add_(-1, cells, torch.cat([on, on], -1))
    return flat.clamp_(max=1.0).view(*x.shape[:-1], S, S)  # two triples linking one pair still give 1
