"""Helpers for :meth:`tasks.base.Task.draw`: answers drawn on matplotlib axes that the caller passes in.

Only methods of the axes object are called, so ``tasks/`` never imports matplotlib (the analysis owns the
figure; docs/adding_a_task.md).  Colours are matplotlib colour names or RGB triples in 0..1.
"""

from __future__ import annotations

import math

import numpy as np


def cell_colour(given: bool, changed: bool) -> str:
    """Black for a given kept, red for a given the answer changed, blue for a cell the model filled in."""
    return "red" if changed else ("black" if given else "tab:blue")


def grid_lines(ax, rows: int, cols: int, box: tuple[int, int] | None = None) -> None:
    """A white ``rows x cols`` board with thin cell lines; thick lines every ``box`` cells (Sudoku boxes)."""
    ax.imshow(np.zeros((rows, cols)), cmap="Greys", vmin=0, vmax=1, extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
    for k in range(rows + 1):
        ax.axhline(k - 0.5, color="black", linewidth=2 if box and k % box[0] == 0 else 0.5)
    for k in range(cols + 1):
        ax.axvline(k - 0.5, color="black", linewidth=2 if box and k % box[1] == 0 else 0.5)


def symbol_grid(ax, x, y, rows: int, cols: int, symbol, given, box: tuple[int, int] | None = None,
                fontsize: float | None = None) -> None:
    """Answer ``y`` as ``symbol(token)`` text in a ``rows x cols`` board: cells where ``given(x_token)`` holds
    (and ``x`` has one token per answer cell) are bold, black if kept and red if the answer changed them."""
    grid_lines(ax, rows, cols, box)
    y = np.asarray(y).reshape(-1)
    aligned = x is not None and len(x) == len(y)
    for idx, t in enumerate(y):
        r, c = divmod(idx, cols)
        is_given = aligned and bool(given(int(x[idx])))
        ax.text(c, r, symbol(int(t)), ha="center", va="center", fontsize=fontsize or max(6, 80 // max(rows, cols)),
                color=cell_colour(is_given, is_given and t != x[idx]), fontweight="bold" if is_given else "normal")


def token_grid(ax, y) -> None:
    """Any answer: its tokens as a square (else one-row) heat map, with the token numbers on small grids."""
    y = np.asarray(y).reshape(-1)
    side = int(round(math.sqrt(len(y))))
    grid = y.reshape(side, side) if side * side == len(y) else y.reshape(1, -1)
    ax.imshow(grid, cmap="magma", interpolation="nearest")
    if grid.size <= 100:
        for (r, c), t in np.ndenumerate(grid):
            ax.text(c, r, str(int(t)), ha="center", va="center", fontsize=7, color="cyan")


def colour_grid(ax, grid: np.ndarray, palette: np.ndarray) -> None:
    """Cells of integer ``grid`` [h, w] painted ``palette[value]`` (RGB in 0..1), with thin grey cell lines."""
    grid = np.asarray(grid, dtype=np.int64)
    h, w = grid.shape
    ax.imshow(np.asarray(palette, dtype=float)[grid], interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    for k in range(h + 1):
        ax.axhline(k - 0.5, color="grey", linewidth=0.3)
    for k in range(w + 1):
        ax.axvline(k - 0.5, color="grey", linewidth=0.3)
