"""ARC grids as tokens, the dihedral x colour augmentations, voting and pass@k (gram-paper.md §5.1, §5.3).

Tokens (HRM/TRM layout, gram-paper.md §5.1): 0 pad, 1 EOS, colour ``c`` (0–9) -> ``c + 2``; a grid of
``h x w`` sits in the top-left corner of a ``G x G`` canvas (G = 30 in the paper), with an EOS row under it
(columns ``0..w-1``) and an EOS column right of it (rows ``0..h-1``), row-major.

An augmentation is one of the 8 dihedral transforms and a permutation of the colours 1–9 (black, 0, stays
fixed, as in TRM's ``build_arc_dataset.py``); it is applied to the grid, never to the canvas, so the grid
stays in the corner.  Every augmentation inverts exactly (``invert``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

PAD, EOS, COLOUR0 = 0, 1, 2
N_DIHEDRAL = 8


def encode_grid(grid: np.ndarray, size: int) -> np.ndarray:
    """``h x w`` colours 0–9 -> int64 [size*size] tokens with the EOS frame (module docstring)."""
    h, w = grid.shape
    canvas = np.zeros((size, size), dtype=np.int64)
    canvas[:h, :w] = grid + COLOUR0
    if h < size:
        canvas[h, :w] = EOS
    if w < size:
        canvas[:h, w] = EOS
    return canvas.reshape(-1)


def decode_grid(tokens: np.ndarray, size: int) -> np.ndarray | None:
    """Tokens -> the colour grid in the top-left corner, or None when there is no well-formed grid there.

    The width is the run of colour tokens in the first row, the height the run of colour tokens in the first
    column; the grid is valid when every cell of that rectangle is a colour and the rectangle is closed by
    EOS or the canvas edge on the right and below (the encoding's frame).
    """
    t = np.asarray(tokens).reshape(size, size)
    colour = t >= COLOUR0
    w = int(np.argmin(colour[0])) if not colour[0].all() else size
    h = int(np.argmin(colour[:, 0])) if not colour[:, 0].all() else size
    if h == 0 or w == 0 or not colour[:h, :w].all() or (t[:h, :w] > COLOUR0 + 9).any():
        return None
    if (w < size and (t[:h, w] != EOS).any()) or (h < size and (t[h, :w] != EOS).any()):
        return None
    return t[:h, :w] - COLOUR0


def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Dihedral transform ``t`` in 0..7: transpose when ``t >= 4``, then ``t % 4`` quarter turns."""
    g = grid.T if t >= 4 else grid
    return np.rot90(g, t % 4)


def inverse_dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """The inverse of :func:`dihedral` (``inverse_dihedral(dihedral(g, t), t) == g``)."""
    g = np.rot90(grid, -(t % 4))
    return g.T if t >= 4 else g


def augment_grid(grid: np.ndarray, t: int, perm: np.ndarray) -> np.ndarray:
    """Apply colour permutation ``perm`` [10] (``perm[0] == 0``) and dihedral transform ``t``."""
    return np.ascontiguousarray(dihedral(perm[grid], t))


def invert_grid(grid: np.ndarray, t: int, perm: np.ndarray) -> np.ndarray:
    """The inverse of :func:`augment_grid`."""
    return np.ascontiguousarray(np.argsort(perm)[inverse_dihedral(grid, t)])


def augmentation_table(n_puzzles: int, n_aug: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed augmentations per (puzzle, index): ``(trans [P, A+1], perm [P, A+1, 10])``; index 0 is the
    identity, the others are a seeded random dihedral transform and colour permutation (black fixed)."""
    rng = np.random.default_rng([seed, n_puzzles, n_aug])
    trans = rng.integers(0, N_DIHEDRAL, size=(n_puzzles, n_aug + 1))
    perm = np.argsort(rng.random((n_puzzles, n_aug + 1, 9)), axis=-1) + 1
    perm = np.concatenate([np.zeros((n_puzzles, n_aug + 1, 1), dtype=np.int64), perm], axis=-1)
    trans[:, 0] = 0
    perm[:, 0] = np.arange(10)
    return trans, perm


def grid_key(grid: np.ndarray) -> bytes:
    """A hashable key of a grid (shape and cells)."""
    g = np.asarray(grid, dtype=np.int8)
    return bytes(g.shape) + g.tobytes()


def vote(candidates: list[np.ndarray | None], k: int = 2) -> list[tuple[np.ndarray, int]]:
    """The ``k`` most frequent well-formed grids among ``candidates`` with their counts (ties: first seen).

    This is the majority vote over augmentations and samples of TRM's evaluator (gram-paper.md §5.3); None
    (no well-formed grid) never wins.
    """
    counts: Counter[bytes] = Counter()
    first: dict[bytes, np.ndarray] = {}
    for g in candidates:
        if g is None:
            continue
        key = grid_key(g)
        counts[key] += 1
        first.setdefault(key, g)
    order = sorted(counts, key=lambda key: -counts[key])  # sorted is stable: ties keep first-seen order
    return [(first[key], counts[key]) for key in order[:k]]


def pass_at_k(top: list[tuple[np.ndarray, int]], target: np.ndarray, k: int = 2) -> bool:
    """ARC's scoring of one test output: correct when one of the first ``k`` attempts equals it exactly."""
    return any(g.shape == target.shape and bool((g == target).all()) for g, _ in top[:k])


def arc_score(per_test: dict[tuple[int, int], bool]) -> float:
    """ARC's task score: per puzzle the fraction of its test outputs solved, averaged over puzzles."""
    by_puzzle: dict[int, list[bool]] = {}
    for (p, _), ok in per_test.items():
        by_puzzle.setdefault(p, []).append(ok)
    return float(np.mean([np.mean(v) for v in by_puzzle.values()])) if by_puzzle else 0.0
