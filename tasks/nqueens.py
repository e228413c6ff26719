"""N-Queens completion (gram-paper.md §5.4; tokens §5.1; metrics §5.6; enumeration baselines-and-data.md §7.3).

Protocol (gram-paper.md §5.4): enumerate every full N-Queens solution; remove ``k`` queens from each
solution for every ``k`` in ``REMOVED[N]`` and every choice of removed rows; the remaining partial
boards, deduplicated, are the inputs; every full solution that keeps an input's queens is one of its
targets.  Unique inputs are split 85:15 with a seeded ``numpy`` Generator, so no test input is seen in
training.  One row per (input, completion) pair; ``Split.solutions`` holds every completion.

Tokens (gram-paper.md §5.1): ``N*N`` cells row-major, 0 pad, 1 empty, 2 queen; input and answer both
have ``N*N`` tokens and ``vocab_size`` is 3.

The paper fixes ``k`` only for N = 8 ({5, 6, 7}) and N = 10 ({7, 8, 9}); N = 6 (a small smoke-test
size, not in the paper) uses {3, 4}: half or more of the six queens removed, as for the paper's sizes.
"""

from __future__ import annotations

import itertools
from functools import cached_property
from typing import Any

import numpy as np

from gram_tasks import register
from gram_tasks.base import Split, Task, TaskInputError

EMPTY, QUEEN = 1, 2
REMOVED: dict[int, tuple[int, ...]] = {6: (3, 4), 8: (5, 6, 7), 10: (7, 8, 9)}
TRAIN_PERCENT = 85


def all_solutions(n: int) -> np.ndarray:
    """Every N-Queens solution as int64 [m, n] (column of the queen in each row), lexicographic order.

    Bitmask backtracking (baselines-and-data.md §7.3): 92 solutions for n = 8, 724 for n = 10.
    """
    full = (1 << n) - 1
    out: list[tuple[int, ...]] = []

    def place(cols: int, diag: int, anti: int, acc: tuple[int, ...]) -> None:
        if len(acc) == n:
            out.append(acc)
            return
        free = full & ~(cols | diag | anti)
        while free:
            bit = free & -free
            free ^= bit
            place(cols | bit, ((diag | bit) << 1) & full, (anti | bit) >> 1, acc + (bit.bit_length() - 1,))

    place(0, 0, 0, ())
    return np.array(out, dtype=np.int64).reshape(len(out), n)


def dihedral_permutations(n: int) -> np.ndarray:
    """The 8 symmetries of an n x n board as int64 [8, n*n] gather indices: ``new = old[perm]``."""
    grid = np.arange(n * n).reshape(n, n)
    turns = [np.rot90(grid, k) for k in range(4)]
    return np.stack([t.ravel() for t in turns + [np.fliplr(t) for t in turns]]).astype(np.int64)


class NQueensTask(Task):
    """Complete a partial N-Queens board (gram-paper.md §5.4).

    ``verify(x, y)``: ``y`` is a full board with N mutually non-attacking queens that keeps every queen
    of ``x``.  ``solutions(x)``: all such boards.  ``augment``: one of the 8 board symmetries per row.
    """

    vocab_size = 3

    def __init__(self, n: int, removed: tuple[int, ...] | None = None):
        if removed is None and n not in REMOVED:
            raise TaskInputError(f"no removed-queen counts known for N = {n}; pass removed=(...)")
        self.n = n
        self.removed = tuple(removed if removed is not None else REMOVED[n])
        self.name = f"nqueens-{n}"
        self.seq_len = self.out_len = n * n

    # --- enumeration (seed-independent, computed once per task object) -------------------------
    @cached_property
    def _solutions(self) -> np.ndarray:
        return all_solutions(self.n)

    @cached_property
    def _solution_tokens(self) -> np.ndarray:
        return self._boards(self._solutions)

    @cached_property
    def _symmetries(self) -> np.ndarray:
        return dihedral_permutations(self.n)

    def _boards(self, cols: np.ndarray) -> np.ndarray:
        """Column arrays [m, n] (-1 = no queen in that row) -> tokens [m, n*n]."""
        n = self.n
        tokens = np.full((cols.shape[0], n * n), EMPTY, dtype=np.int64)
        rows, r = np.nonzero(cols >= 0)
        tokens[rows, r * n + cols[rows, r]] = QUEEN
        return tokens

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unique inputs as column arrays [g, n], group of each pair [P], solution of each pair [P]).

        Pairs are sorted by group, then solution.  A partial board is keyed by the integer whose base
        n + 1 digits are its columns + 1 (0 = removed row), so deduplication is one ``np.unique``.
        """
        sols, n = self._solutions, self.n
        keys, owner = [], []
        for k in self.removed:
            for rows in itertools.combinations(range(n), k):
                partial = sols.copy()
                partial[:, list(rows)] = -1
                keys.append(partial)
                owner.append(np.arange(len(sols)))
        partial, sol_idx = np.concatenate(keys), np.concatenate(owner)
        code = (partial + 1) @ ((n + 1) ** np.arange(n - 1, -1, -1, dtype=np.int64))
        _, first, group = np.unique(code, return_index=True, return_inverse=True)
        order = np.lexsort((sol_idx, group))
        return partial[first], group[order], sol_idx[order]

    def _split_ids(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        g = len(self._pairs[0])
        perm = np.random.default_rng(seed).permutation(g)
        n_train = g * TRAIN_PERCENT // 100
        return np.sort(perm[:n_train]), np.sort(perm[n_train:])

    # --- data ---------------------------------------------------------------------------------
    def build(self, seed: int = 0) -> dict[str, Split]:
        """``{"train", "test"}``: 85:15 by unique input (gram-paper.md §5.4), rows = (input, completion)."""
        unique, group, sol_idx = self._pairs
        inputs_all = self._boards(unique)
        out = {}
        for split_name, ids in zip(("train", "test"), self._split_ids(seed)):
            rows = np.nonzero(np.isin(group, ids))[0]
            remap = np.full(len(unique), -1, dtype=np.int64)
            remap[ids] = np.arange(len(ids))
            y = self._solution_tokens[sol_idx[rows]]
            counts = np.bincount(group[rows], minlength=len(unique))[ids]
            out[split_name] = Split(
                x=inputs_all[group[rows]],
                y=y,
                group=remap[group[rows]],
                inputs=inputs_all[ids],
                solutions=np.split(y.copy(), np.cumsum(counts)[:-1]),
                meta={"task": self.name, "seed": seed, "removed": list(self.removed)},
            )
        return out

    def stats(self, seed: int = 0) -> dict[str, Any]:
        unique, group, _ = self._pairs
        counts = np.bincount(group, minlength=len(unique))
        train, test = self._split_ids(seed)
        return {
            "task": self.name,
            "n": self.n,
            "removed": list(self.removed),
            "seed": seed,
            "full_solutions": int(len(self._solutions)),
            "unique_inputs": int(len(unique)),
            "pairs": int(len(group)),
            "train_inputs": int(len(train)),
            "test_inputs": int(len(test)),
            "train_pairs": int(counts[train].sum()),
            "test_pairs": int(counts[test].sum()),
            "mean_completions": float(counts.mean()),
            "max_completions": int(counts.max()),
            "single_solution_fraction": float((counts == 1).mean()),
        }

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One random dihedral symmetry per row, the same for ``x`` and ``y`` ([B, N*N] or [N*N])."""
        x2, y2 = np.atleast_2d(x), np.atleast_2d(y)
        perm = self._symmetries[rng.integers(0, 8, size=x2.shape[0])]
        xa, ya = np.take_along_axis(x2, perm, axis=1), np.take_along_axis(y2, perm, axis=1)
        return xa.reshape(np.shape(x)), ya.reshape(np.shape(y))

    # --- encoding -----------------------------------------------------------------------------
    def _parse(self, obj: Any) -> np.ndarray:
        """Board string ('.'/'Q', N lines or one N*N string) or 0/1 array -> bool [N, N]."""
        n = self.n
        if isinstance(obj, str):
            lines = [line.strip() for line in obj.strip().splitlines()]
            if len(lines) == 1 and len(lines[0]) == n * n:
                lines = [lines[0][i : i + n] for i in range(0, n * n, n)]
            if len(lines) != n:
                raise TaskInputError(f"board has {len(lines)} rows, expected {n} rows of {n} characters "
                                     f"(or one string of {n * n})")
            for r, line in enumerate(lines, 1):
                if len(line) != n:
                    raise TaskInputError(f"row {r} has {len(line)} characters, expected {n}")
                for c, ch in enumerate(line, 1):
                    if ch not in ".Q":
                        raise TaskInputError(f"row {r}, column {c}: unexpected character {ch!r} (use '.' or 'Q')")
            return np.array([[ch == "Q" for ch in line] for line in lines], dtype=bool)
        try:
            arr = np.asarray(obj)
        except (ValueError, TypeError) as err:
            raise TaskInputError(f"cannot read board as an array: {err}".splitlines()[0]) from None
        if arr.shape not in ((n, n), (n * n,)):
            raise TaskInputError(f"board array has shape {arr.shape}, expected ({n}, {n}) or ({n * n},)")
        arr = arr.reshape(n, n)
        if arr.dtype.kind not in "biuf":
            raise TaskInputError(f"board array has dtype {arr.dtype}, expected 0/1 numbers")
        bad = np.argwhere((arr != 0) & (arr != 1))
        if len(bad):
            r, c = bad[0]
            raise TaskInputError(f"row {r + 1}, column {c + 1}: value {arr[r, c].item()!r}, expected 0 or 1")
        return arr.astype(bool)

    def encode_input(self, obj: Any) -> np.ndarray:
        """Partial board -> tokens [N*N].  Rejects malformed boards, > N queens and attacking queens.

        A well-formed partial board without any completion is accepted (``solutions`` is then empty).
        Rows and columns in messages are 1-based.
        """
        board = self._parse(obj)
        queens = np.argwhere(board)
        if len(queens) > self.n:
            raise TaskInputError(f"board has {len(queens)} queens, at most {self.n} allowed")
        for (r1, c1), (r2, c2) in itertools.combinations(queens.tolist(), 2):
            if r1 == r2 or c1 == c2 or abs(r1 - r2) == abs(c1 - c2):
                raise TaskInputError(f"queens at row {r1 + 1} column {c1 + 1} and row {r2 + 1} column {c2 + 1} "
                                     "attack each other")
        return np.where(board.ravel(), QUEEN, EMPTY).astype(np.int64)

    def encode_output(self, obj: Any) -> np.ndarray:
        """Full board -> tokens [N*N].  Checks the format only; ``verify`` judges validity."""
        return np.where(self._parse(obj).ravel(), QUEEN, EMPTY).astype(np.int64)

    def decode_output(self, tokens: np.ndarray) -> str:
        """Tokens -> N lines of '.'/'Q' ('?' marks a token that is neither empty nor queen)."""
        t = np.asarray(tokens)
        if t.size != self.out_len:
            raise TaskInputError(f"answer has {t.size} tokens, expected {self.out_len}")
        symbol = {EMPTY: ".", QUEEN: "Q"}
        return "\n".join("".join(symbol.get(int(v), "?") for v in row) for row in t.reshape(self.n, self.n))

    # --- checking -----------------------------------------------------------------------------
    def _tokens(self, a: Any) -> np.ndarray | None:
        """``a`` as an int64 [N*N] board of 1/2 tokens, or None when it is not one."""
        try:
            arr = np.asarray(a)
        except Exception:
            return None
        if arr.shape != (self.seq_len,) or arr.dtype.kind not in "iuf" or not np.isin(arr, (EMPTY, QUEEN)).all():
            return None
        return arr.astype(np.int64)

    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        xt, yt = self._tokens(x), self._tokens(y)
        if xt is None or yt is None:
            return False
        queens = yt.reshape(self.n, self.n) == QUEEN
        if not (queens.sum(axis=1) == 1).all() or not (queens.sum(axis=0) == 1).all():
            return False
        rows = np.arange(self.n)
        cols = queens.argmax(axis=1)
        if len(set((rows + cols).tolist())) < self.n or len(set((rows - cols).tolist())) < self.n:
            return False
        return bool((yt[xt == QUEEN] == QUEEN).all())

    def solutions(self, x: np.ndarray) -> np.ndarray:
        """All full boards that keep the queens of ``x`` (empty for a malformed ``x``)."""
        xt = self._tokens(x)
        if xt is None:
            return np.empty((0, self.out_len), dtype=np.int64)
        r, c = np.divmod(np.nonzero(xt == QUEEN)[0], self.n)
        keep = (self._solutions[:, r] == c).all(axis=1)
        return self._solution_tokens[keep].copy()

    # --- analysis hooks (tasks.base.Task) -------------------------------------------------------
    drawing_key = "black queen = given in the input, blue = placed by the model"

    def answer_statistics(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Token counts plus ``queens placed`` (N for every valid answer)."""
        out = super().answer_statistics(x, y)
        out["queens placed"] = (np.asarray(y) == QUEEN).sum(axis=-1)
        return out

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """A chequered board with ♛ on the queens of ``answer`` (black where ``x`` gives them)."""
        n = self.n
        board = (np.add.outer(np.arange(n), np.arange(n)) % 2).astype(float)
        ax.imshow(board, cmap="Greys", vmin=-1, vmax=4, extent=(-0.5, n - 0.5, n - 0.5, -0.5))
        for idx in np.flatnonzero(np.asarray(answer).reshape(-1) == QUEEN):
            r, c = divmod(int(idx), n)
            given = x is not None and len(x) == self.out_len and x[idx] == QUEEN
            ax.text(c, r, "♛", ha="center", va="center", fontsize=max(6, 90 // n),
                    color="black" if given else "tab:blue")


for _n in REMOVED:
    register(f"nqueens-{_n}", lambda _n=_n: NQueensTask(_n))
