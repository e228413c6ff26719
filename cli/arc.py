"""``gram solve RUN task.json`` on an ARC run: the top-2 voted test outputs, drawn in ARC's colours (§5.3).

A puzzle seen in training (the same demonstration pairs) is run under all of its A+1 augmentations with its
learned puzzle embeddings; every sample is mapped back through its inverse augmentation and the answers
are voted (TRM's protocol).  An unseen puzzle has no embedding: it runs once, with the blank identifier.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gram_tasks.arc import ARC_COLOURS, ArcTask, puzzle_from_file
from gram_tasks.arc_augment import pass_at_k


def is_arc(task: Any) -> bool:
    return isinstance(task, ArcTask)


def draw(grid: list[list[int]] | np.ndarray) -> str:
    """A grid as ANSI 24-bit colour cells (two characters each, the colour's digit inside)."""
    lines = []
    for row in np.asarray(grid).tolist():
        cells = []
        for v in row:
            r, g, b = ARC_COLOURS[v]
            fg = "30" if r + g + b > 380 else "97"
            cells.append(f"\x1b[48;2;{r};{g};{b}m\x1b[{fg}m{v:>2}")
        lines.append("".join(cells) + "\x1b[0m")
    return "\n".join(lines)


def solve(run, path: str, width: int, depth: int | None, tau: float, sample) -> dict[str, Any]:
    """Top-2 voted outputs for every test input of the puzzle in ``path``; ``sample(run, x, width, depth,
    tau)`` draws the prior samples (``gram_cli.api.sample``)."""
    task: ArcTask = run.task
    puzzle = puzzle_from_file(path)
    p = task.find(puzzle)
    tests = []
    for t, (inp, out) in enumerate(puzzle.test):
        if max(inp.shape) > task.grid:
            raise ValueError(f"{path}: test input {t} is {inp.shape[0]}x{inp.shape[1]}, larger than this run's "
                             f"{task.grid}x{task.grid} grid")
        augs = range(task.aug + 1) if p is not None else [0]
        rows = np.stack([task.row(p, a, inp) for a in augs])
        top = task.predict(rows, sample(run, rows, width, depth, tau), 2)
        tests.append({"test": t, "input": inp.tolist(), "votes_cast": len(rows) * width,
                      "attempts": [{"grid": g.tolist(), "votes": c} for g, c in top],
                      "correct": None if out is None else bool(pass_at_k(top, out, 2))})
    return {"puzzle": puzzle.name, "seen_in_training": p is not None, "width": width, "tests": tests}


def print_solution(out: dict[str, Any], as_json: bool) -> int:
    """Print :func:`solve`'s result as JSON or as coloured grids; returns the exit code 0."""
    if as_json:
        print(json.dumps(out, indent=2))
        return 0
    seen = "seen in training" if out["seen_in_training"] else "not seen in training: blank puzzle embedding"
    print(f"puzzle {out['puzzle']} ({seen})")
    for t in out["tests"]:
        verdict = "" if t["correct"] is None else ("  pass@2: correct" if t["correct"] else "  pass@2: wrong")
        print(f"\ntest input {t['test']}:{verdict}\n{draw(t['input'])}")
        if not t["attempts"]:
            print(f"no well-formed grid among {t['votes_cast']} samples")
        for i, a in enumerate(t["attempts"], 1):
            print(f"\nattempt {i}: {a['votes']} of {t['votes_cast']} votes\n{draw(a['grid'])}")
    return 0
