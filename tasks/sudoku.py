"""Sudoku tasks ``sudoku-9`` and ``sudoku-4`` (gram-paper.md §5.1, §5.2; baselines-and-data.md §1.5, §6).

Encoding (the Sudoku-Extreme one, gram-paper.md §5.1): token 0 pad, 1 blank, digit ``d`` -> ``d + 1``;
row-major, ``seq_len = out_len = n*n`` (81 for 9x9 with vocabulary 11; 16 for 4x4 with vocabulary 6).
All cells, givens included, are targets (baselines-and-data.md §1.5).

Data: :meth:`SudokuTask.build` generates its own minimal unique-solution puzzles with a seed
(:mod:`tasks.sudoku_solver`), so the project needs no external data; :meth:`SudokuTask.build_from_file`
builds splits from a tdoku list or a Sudoku-Extreme CSV the user points at (the shared hard lists of
baselines-and-data.md §6.2 are read in place and never copied into the repository).

Augmentation (baselines-and-data.md §1.5): digit permutation, band and stack permutations, row and column
permutations inside them, and a transpose with probability 1/2, applied identically to puzzle and answer.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from math import isqrt
from pathlib import Path
from typing import Any

import numpy as np

from gram_tasks import register
from gram_tasks.base import Split, Task, TaskInputError
from gram_tasks.drawing import symbol_grid
from gram_tasks.sudoku_io import check_givens, format_grid, parse_grid, read_puzzles
from gram_tasks.sudoku_solver import cell_name, find_conflict, generate_puzzle, geometry, rating, solve

SOLUTION_CAP = 1000  # ``solutions`` enumerates at most this many answers; more -> None (not enumerable)
DEFAULT_SIZES = {9: (1000, 200), 4: (2000, 500)}  # generated (train, test) puzzles per board size


def to_grid(obj: Any, n: int, what: str) -> np.ndarray:
    """Board string, or ``n x n`` / flat list or array of ints (0 blank) -> int64 [n*n] in 0..n."""
    if isinstance(obj, str):
        return parse_grid(obj, n, what)
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError):
        raise TaskInputError(f"{what}: expected a board string or an {n}x{n} grid of integers") from None
    if arr.shape not in ((n, n), (n * n,)):
        raise TaskInputError(f"{what}: expected an {n}x{n} grid or {n * n} cells, got shape {arr.shape}")
    flat = arr.reshape(-1)
    for c, v in enumerate(flat.tolist()):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or not 0 <= v <= n:
            raise TaskInputError(f"{what}: cell {cell_name(c, n)} has bad value {v!r} (use 0 for blank, 1-{n})")
    return flat.astype(np.int64)


def valid_grids(y: np.ndarray, n: int) -> np.ndarray:
    """bool [m]: is each token row of ``y`` [m, n*n] a complete valid grid (tokens 2..n+1)?"""
    y = np.asarray(y).reshape(-1, n * n)
    b = isqrt(n)
    g = y.reshape(-1, n, n)
    boxes = g.reshape(-1, b, b, b, b).transpose(0, 1, 3, 2, 4).reshape(-1, n, n)
    want = np.arange(2, n + 2)
    return np.all([(np.sort(a, axis=-1) == want).all(axis=(1, 2)) for a in (g, g.transpose(0, 2, 1), boxes)], axis=0)


def givens_kept(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """bool [...]: does each answer row keep the digit tokens (>= 2) of its input row?"""
    x, y = np.asarray(x), np.asarray(y)
    return np.all((x < 2) | (y == x), axis=-1)


def random_symmetry(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random validity-preserving symmetry: ``(cell_perm [n*n], token_map [n+2])`` with
    ``new = token_map[old[cell_perm]]`` (pad and blank map to themselves)."""
    b = isqrt(n)
    rows = np.concatenate([band * b + rng.permutation(b) for band in rng.permutation(b)])
    cols = np.concatenate([stack * b + rng.permutation(b) for stack in rng.permutation(b)])
    idx = np.arange(n * n).reshape(n, n)
    if rng.random() < 0.5:
        idx = idx.T
    token_map = np.concatenate([[0, 1], 2 + rng.permutation(n)])
    return idx[rows][:, cols].reshape(-1), token_map


def apply_symmetries(tokens: list[np.ndarray], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one random symmetry per row, the same one to every array of ``tokens`` (each [m, n*n])."""
    m = tokens[0].shape[0]
    perms, maps = zip(*(random_symmetry(n, rng) for _ in range(m))) if m else ((), ())
    perms = np.asarray(perms, dtype=np.int64).reshape(m, n * n)
    maps = np.asarray(maps, dtype=np.int64).reshape(m, n + 2)
    rows = np.arange(m)[:, None]
    return [maps[rows, np.take_along_axis(t, perms, axis=1)] for t in tokens]


def make_split(puzzles: np.ndarray, answers: np.ndarray, meta: dict[str, Any]) -> Split:
    """A split of unique-solution puzzles (digits 0..n grids): one row and one answer per input."""
    x, y = puzzles.astype(np.int64) + 1, answers.astype(np.int64) + 1
    solutions = [y[i : i + 1] for i in range(len(y))]
    return Split(x=x, y=y, group=np.arange(len(x)), inputs=x, solutions=solutions, meta=meta)


class SudokuTask(Task):
    """Solve an ``n x n`` Sudoku (n = 9 or 4); see the module docstring for encodings and data."""

    def __init__(
        self,
        n: int = 9,
        n_train: int | None = None,
        n_test: int | None = None,
        min_rating: int = 0,
        data_path: str | Path | None = None,
    ) -> None:
        geometry(n)
        self.n = n
        self.name = f"sudoku-{n}"
        self.vocab_size = n + 2
        self.seq_len = self.out_len = n * n
        self.n_train, self.n_test = n_train, n_test
        self.min_rating = min_rating
        self.data_path = data_path

    # --- encoding ---------------------------------------------------------------------------
    def encode_input(self, obj: Any) -> np.ndarray:
        grid = to_grid(obj, self.n, "puzzle")
        check_givens(grid, self.n, "puzzle")
        if len(solve(grid, self.n, 1)) == 0:
            raise TaskInputError("puzzle: the givens do not contradict each other directly, but it has no solution")
        return grid + 1

    def encode_output(self, obj: Any) -> np.ndarray:
        grid = to_grid(obj, self.n, "answer")
        blanks = np.flatnonzero(grid == 0)
        if len(blanks):
            raise TaskInputError(f"answer: cell {cell_name(int(blanks[0]), self.n)} is blank; answers are full grids")
        return grid + 1

    def decode_output(self, tokens: np.ndarray) -> str:
        """Tokens -> board string (row-major digits; ``.`` for a token that is not a digit)."""
        t = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if t.size != self.out_len:
            raise TaskInputError(f"{self.name}: answer has {t.size} tokens, expected {self.out_len}")
        return format_grid(np.where((t >= 2) & (t <= self.n + 1), t - 1, 0))

    # --- checking ---------------------------------------------------------------------------
    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        """``y`` is a complete valid grid that keeps every given of ``x``."""
        pair = self.flat_pair(x, y)
        return pair is not None and bool(valid_grids(pair[1], self.n)[0] and givens_kept(*pair))

    def solutions(self, x: np.ndarray) -> np.ndarray | None:
        """All answers of ``x``, sorted, as tokens [s, n*n]: empty for an unsolvable or malformed input,
        ``None`` when there are more than ``SOLUTION_CAP`` (1000)."""
        x = np.asarray(x, dtype=np.int64).reshape(-1)
        sols = _solutions(x.tobytes(), self.n)
        return None if sols is None else sols.copy()

    # --- data -------------------------------------------------------------------------------
    def build(self, seed: int = 0) -> dict[str, Split]:
        """Generated splits (``DEFAULT_SIZES``: 1000/200 for 9x9, 2000/500 for 4x4), or the file's
        splits when the task was made with ``data_path``."""
        if self.data_path is not None:
            return self.build_from_file(self.data_path, seed, self.n_train or 1000, self.n_test)
        n_train, n_test = DEFAULT_SIZES[self.n]
        n_train = self.n_train if self.n_train is not None else n_train
        n_test = self.n_test if self.n_test is not None else n_test
        train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, self.n]).spawn(2))
        seen: set[bytes] = set()
        train = self._generate(n_train, train_rng, seen)
        test = self._generate(n_test, test_rng, seen)
        return {"train": train, "test": test}

    def _generate(self, count: int, rng: np.random.Generator, seen: set[bytes]) -> Split:
        """``count`` generated puzzles not in ``seen`` (which is updated) with rating >= ``min_rating``."""
        puzzles, answers, ratings = [], [], []
        attempts = 0
        while len(puzzles) < count:
            attempts += 1
            if attempts > 50 * count + 1000:
                raise TaskInputError(f"{self.name}: could only generate {len(puzzles)} of {count} distinct puzzles")
            puzzle, answer = generate_puzzle(self.n, rng)
            key = puzzle.tobytes()
            if key in seen or (r := rating(puzzle, self.n)) < self.min_rating:
                continue
            seen.add(key)
            puzzles.append(puzzle)
            answers.append(answer)
            ratings.append(r)
        meta = {"source": "generated", "ratings": np.asarray(ratings, dtype=np.int64), "rating_kind": "dfs_guesses"}
        shape = (-1, self.seq_len)
        return make_split(np.asarray(puzzles).reshape(shape), np.asarray(answers).reshape(shape), meta)

    def build_from_file(
        self,
        path: str | Path,
        seed: int = 0,
        n_train: int = 1000,
        n_test: int | None = None,
        limit: int | None = None,
        rate: bool = False,
        shuffle: bool = True,
    ) -> dict[str, Split]:
        """Splits from a tdoku list or Sudoku-Extreme CSV (baselines-and-data.md §6.5, Tier A/C).

        Reads the first ``limit`` puzzles (all by default) and drops exact duplicates.  tdoku puzzles are
        solved with python-sat and must have exactly one solution; CSV answers are taken as given
        (checked complete, valid and consistent with the givens).  With ``shuffle`` each puzzle gets one
        random symmetry (breaking the lists' canonical forms).  The split is by line: ``n_train``
        puzzles drawn with ``seed`` for training, the next ``n_test`` (default: all the rest) for test.
        Ratings: the CSV's tdoku backtracks, else the DFS guess count when ``rate`` (~10 ms a hard puzzle).
        """
        pf = read_puzzles(path, self.n, limit)
        _, first = np.unique(pf.puzzles, axis=0, return_index=True)
        keep = np.sort(first)
        puzzles, lines = pf.puzzles[keep], pf.lines[keep]
        if pf.answers is not None:
            answers = pf.answers[keep]
        else:
            answers = np.empty_like(puzzles)
            for i, (puzzle, no) in enumerate(zip(puzzles, lines)):
                sols = solve(puzzle, self.n, 2)
                if len(sols) != 1:
                    what = "has no solution" if len(sols) == 0 else "has more than one solution"
                    raise TaskInputError(
                        f"{path}: line {no}: puzzle {what}; Sudoku splits need unique-solution puzzles"
                    )
                answers[i] = sols[0]
        if pf.ratings is not None:
            ratings, kind = pf.ratings[keep], "tdoku_backtracks"
        elif rate:
            ratings, kind = np.asarray([rating(p, self.n) for p in puzzles], dtype=np.int64), "dfs_guesses"
        else:
            ratings, kind = None, None
        rng = np.random.default_rng(seed)
        if shuffle:
            x, y = apply_symmetries([puzzles + 1, answers + 1], self.n, rng)
            puzzles, answers = x - 1, y - 1
        if n_train >= len(puzzles):
            raise TaskInputError(
                f"{path}: {len(puzzles)} distinct puzzles leave none for a test split with n_train={n_train}"
            )
        order = rng.permutation(len(puzzles))
        parts = {"train": order[:n_train], "test": order[n_train : None if n_test is None else n_train + n_test]}
        sources = np.asarray(pf.sources, dtype=object)[keep]
        out = {}
        for name, idx in parts.items():
            meta = {
                "source": Path(path).name,
                "lines": lines[idx],
                "sources": sources[idx].tolist(),
                "ratings": None if ratings is None else ratings[idx],
                "rating_kind": kind,
                "duplicates_dropped": int(len(pf.puzzles) - len(keep)),
            }
            out[name] = make_split(puzzles[idx], answers[idx], meta)
        return out

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One random symmetry per row (module docstring), the same for ``x`` and ``y``; 1-D or 2-D."""
        x, y = np.asarray(x), np.asarray(y)
        x2, y2 = apply_symmetries([x.reshape(-1, self.seq_len), y.reshape(-1, self.out_len)], self.n, rng)
        return x2.reshape(x.shape), y2.reshape(y.shape)

    def stats(self, seed: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.name, "vocab_size": self.vocab_size, "seq_len": self.seq_len}
        for name, split in self.build(seed).items():
            clues = (split.x >= 2).sum(axis=1)
            s: dict[str, Any] = {"puzzles": len(split), "clues_mean": float(clues.mean()),
                                 "clues_min": int(clues.min()), "clues_max": int(clues.max())}
            ratings = split.meta.get("ratings")
            if ratings is not None:
                s[split.meta["rating_kind"] + "_median"] = float(np.median(ratings))
                s[split.meta["rating_kind"] + "_p90"] = float(np.percentile(ratings, 90))
                s["zero_guess_fraction"] = float(np.mean(ratings == 0))
            if "sources" in split.meta:
                s["sources"] = dict(Counter(split.meta["sources"]))
            out[name] = s
        return out

    def metrics(self, x: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        """``accuracy``: samples that are valid grids keeping the givens (= exact match for
        unique-solution puzzles); ``validity``: valid grids ignoring the givens; ``givens_kept``;
        ``solved``: inputs with at least one correct sample (pass@N); ``vote_accuracy``: inputs whose
        most frequent sample is correct; ``cell_accuracy``: cells equal to the unique solution
        (unique-solution inputs only); ``distinct_valid`` and ``coverage`` as in ``Task.metrics``."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.seq_len)
        s = np.asarray(samples, dtype=np.int64).reshape(len(x), -1, self.out_len)
        valid = valid_grids(s.reshape(-1, self.out_len), self.n).reshape(s.shape[:2])
        kept = givens_kept(x[:, None, :], s)
        ok = valid & kept
        votes, cells = [], []
        sols = [self.solutions(xi) for xi in x]
        for si, oki, sol in zip(s, ok, sols):
            if len(si):
                _, first, counts = np.unique(si, axis=0, return_index=True, return_counts=True)
                votes.append(bool(oki[first[counts == counts.max()].min()]))  # ties: earliest sample
            if sol is not None and len(sol) == 1:
                cells.append(float((si == sol[0]).mean()) if len(si) else 0.0)
        distinct = self.distinct_valid(s, ok)
        cover = self.coverage_at(s, ok, sols, [s.shape[1]])[:, 0]
        cover = cover[np.isfinite(cover)]
        out = {
            "accuracy": float(ok.mean()) if ok.size else 0.0,
            "validity": float(valid.mean()) if valid.size else 0.0,
            "givens_kept": float(kept.mean()) if kept.size else 0.0,
            "solved": float(ok.any(axis=1).mean()) if ok.size else 0.0,
            "vote_accuracy": float(np.mean(votes)) if votes else 0.0,
            "distinct_valid": float(np.mean(distinct)) if distinct.size else 0.0,
        }
        if cells:
            out["cell_accuracy"] = float(np.mean(cells))
        if cover.size:
            out["coverage"] = float(np.mean(cover))
        return out

    # --- analysis hooks (tasks.base.Task) -------------------------------------------------------
    drawing_key = "black = given in the input, blue = filled in, red = a given the sample changed"

    def validity(self, x: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """``verify`` of every sample, vectorised: x [G, seq_len], samples [G, N, out_len] -> bool [G, N]."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.seq_len)
        s = np.asarray(samples, dtype=np.int64).reshape(len(x), -1, self.out_len)
        return valid_grids(s.reshape(-1, self.out_len), self.n).reshape(s.shape[:2]) & givens_kept(x[:, None, :], s)

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """The grid with its box lines; givens bold (black kept, red changed), filled-in digits blue."""
        b = isqrt(self.n)
        symbol_grid(ax, x, answer, self.n, self.n, lambda t: str(t - 1) if 2 <= t <= self.n + 1 else "?",
                    lambda t: t >= 2, box=(b, b))


@lru_cache(maxsize=65536)
def _solutions(key: bytes, n: int) -> np.ndarray | None:
    x = np.frombuffer(key, dtype=np.int64)
    if x.shape != (n * n,) or ((x < 1) | (x > n + 1)).any():
        return np.zeros((0, n * n), dtype=np.int64)
    grid = x - 1
    if find_conflict(grid, n) is not None:
        return np.zeros((0, n * n), dtype=np.int64)
    sols = solve(grid, n, SOLUTION_CAP + 1)
    if len(sols) > SOLUTION_CAP:
        return None
    sols = sols[np.lexsort(sols.T[::-1])] + 1
    sols.setflags(write=False)
    return sols


register("sudoku-9", lambda: SudokuTask(9))
register("sudoku-4", lambda: SudokuTask(4))
