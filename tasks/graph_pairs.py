"""Pair structure of the graph-colouring encodings: which input token links which two decode positions (issue 16).

A model option, not in the paper (``model.pair_bias``, gram_pyro/pair_bias.py): attention between the positions
where two vertices' colours are decoded gets a learned bias when the input holds an edge between them.  Both
encodings decode vertex v's colour at content position v (gram-paper.md §5.5; ``decode`` reads the first
``out_len`` content positions), so edge token k of the upper triangle, at input position ``offset + k``, links
content positions i_k and j_k (``numpy.triu_indices(n, 1)`` order, the order of the edge tokens).
``graph-coloring-n`` has offset 0: its positions 0..n-1 are edge tokens whose latent state carries the colours.
"""

from __future__ import annotations

import numpy as np


def edge_links(n: int, offset: int) -> tuple[tuple[int, int, int], ...]:
    """(input position of edge token k, vertex i_k, vertex j_k) for every upper-triangle pair of ``n`` vertices."""
    iu, ju = np.triu_indices(n, 1)
    return tuple((offset + k, int(i), int(j)) for k, (i, j) in enumerate(zip(iu, ju)))
