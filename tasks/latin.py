"""Latin-square completion ``latin-4`` (not in the paper): the task written by following docs/adding_a_task.md.

A Latin square of order n is an n x n grid of the symbols 1..n in which every row and every column holds
each symbol once (576 squares for n = 4).  The input is a partially filled square, the answer a complete
square that keeps every given symbol; an input usually has several completions, so, as for N-Queens
(gram-paper.md §5.4), a deterministic model can give one of them and GRAM can cover the set.

Protocol: enumerate every Latin square by backtracking; from each square blank ``k`` cells for every ``k``
in ``BLANKS`` (``MASKS`` random choices of cells each, from ``numpy.random.default_rng(seed)``);
deduplicate the partial squares; each input's targets are all squares that keep its givens (exact, by
filtering the enumeration), one row per (input, completion); the unique inputs split 85:15.

Tokens (gram-paper.md §5.1, as Sudoku): 0 pad, 1 blank, symbol ``d`` -> ``d + 1``; row-major,
``seq_len = out_len = n*n``, vocabulary n + 2.  Canonical form: the identity.  The givens fix the
symbols and positions, so no two completions of one input are the same square up to a symmetry; the
symmetries (symbol relabelling, row and column permutations, transpose) act on input and answer together
and are the augmentation.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from gram_tasks import register
from gram_tasks.base import Split, Task, TaskInputError
from gram_tasks.drawing import symbol_grid

BLANK = 1
BLANKS = (10, 12)  # blanked cells of 16; `gram data latin-4 --stats`: 3.91 completions per input on average
MASKS = 2  # random blank patterns per (square, k)
TRAIN_PERCENT = 85


def latin_squares(n: int) -> np.ndarray:
    """Every Latin square of order ``n`` as int64 [m, n*n] symbols 1..n, lexicographic (576 for n = 4)."""
    out: list[list[int]] = []
    cells = [0] * (n * n)

    def fill(i: int) -> None:
        if i == n * n:
            out.append(cells.copy())
            return
        r, c = divmod(i, n)
        used = set(cells[r * n : i]) | {cells[k * n + c] for k in range(r)}
        for v in range(1, n + 1):
            if v not in used:
                cells[i] = v
                fill(i + 1)

    fill(0)
    return np.array(out, dtype=np.int64).reshape(len(out), n * n)


class LatinSquareTask(Task):
    """Complete a partially filled ``n x n`` Latin square (``latin-N``); see the module docstring."""

    def __init__(self, n: int = 4) -> None:
        self.n = n
        self.name = f"latin-{n}"
        self.vocab_size = n + 2
        self.seq_len = self.out_len = n * n

    # --- enumeration and data ---------------------------------------------------------------
    @cached_property
    def _squares(self) -> np.ndarray:
        return latin_squares(self.n) + 1  # tokens

    def _inputs(self, seed: int) -> np.ndarray:
        """The unique partial squares (tokens) of the protocol, sorted."""
        rng = np.random.default_rng(seed)
        parts = []
        for k in BLANKS:
            for _ in range(MASKS):
                blank = np.argsort(rng.random((len(self._squares), self.seq_len)), axis=1)[:, :k]
                part = self._squares.copy()
                np.put_along_axis(part, blank, BLANK, axis=1)
                parts.append(part)
        return np.unique(np.concatenate(parts), axis=0)

    def _split_inputs(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        inputs = self._inputs(seed)
        perm = np.random.default_rng([seed, 1]).permutation(len(inputs))
        n_train = len(inputs) * TRAIN_PERCENT // 100
        return inputs[np.sort(perm[:n_train])], inputs[np.sort(perm[n_train:])]

    def build(self, seed: int = 0) -> dict[str, Split]:
        """``{"train", "test"}``: 85:15 by unique input; rows = (input, completion) pairs."""
        out = {}
        for name, inputs in zip(("train", "test"), self._split_inputs(seed)):
            sols = [self.solutions(x) for x in inputs]
            group = np.repeat(np.arange(len(inputs), dtype=np.int64), [len(s) for s in sols])
            out[name] = Split(x=inputs[group], y=np.concatenate(sols), group=group, inputs=inputs, solutions=sols,
                              meta={"task": self.name, "seed": seed, "blanks": list(BLANKS)})
        return out

    def stats(self, seed: int = 0) -> dict[str, Any]:
        train, test = self._split_inputs(seed)
        counts = {name: np.array([len(self.solutions(x)) for x in xs])
                  for name, xs in (("train", train), ("test", test))}
        every = np.concatenate(list(counts.values()))
        return {"task": self.name, "n": self.n, "seed": seed, "blanks": list(BLANKS), "squares": len(self._squares),
                "train_inputs": len(train), "test_inputs": len(test), "train_pairs": int(counts["train"].sum()),
                "test_pairs": int(counts["test"].sum()), "mean_completions": float(every.mean()),
                "max_completions": int(every.max()), "single_solution_fraction": float((every == 1).mean())}

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per row one random symbol relabelling, row and column permutation and (p = 1/2) transpose, the
        same for ``x`` and ``y`` ([B, n*n] or [n*n]); each maps Latin squares and their givens to others."""
        x2, y2 = np.array(np.atleast_2d(x)), np.array(np.atleast_2d(y))
        n = self.n
        for i in range(len(x2)):
            relabel = np.concatenate([[0, BLANK], rng.permutation(n) + 2])
            idx = np.arange(n * n).reshape(n, n)[rng.permutation(n)][:, rng.permutation(n)]
            idx = (idx.T if rng.random() < 0.5 else idx).reshape(-1)
            x2[i], y2[i] = relabel[x2[i][idx]], relabel[y2[i][idx]]
        return x2.reshape(np.shape(x)), y2.reshape(np.shape(y))

    # --- encoding ---------------------------------------------------------------------------
    def _parse(self, obj: Any, what: str) -> np.ndarray:
        """A string (n lines, or one line of n*n; digits 1..n, '.' or '0' blank) or an n x n / n*n array of
        0..n -> int64 [n*n] symbols (0 blank)."""
        n = self.n
        if isinstance(obj, str):
            lines = [line.strip() for line in obj.strip().splitlines()]
            text = "".join(lines)
            if len(text) != n * n or any(len(line) != n for line in lines if len(lines) > 1):
                raise TaskInputError(f"{what}: expected {n} rows of {n} characters (or one string of {n * n})")
            bad = [ch for ch in text if ch not in ".0123456789"[: n + 2]]
            if bad:
                raise TaskInputError(f"{what}: unexpected character {bad[0]!r} (use 1-{n}, or '.' for a blank)")
            return np.array([0 if ch == "." else int(ch) for ch in text], dtype=np.int64)
        try:
            arr = np.asarray(obj)
        except (ValueError, TypeError):
            raise TaskInputError(f"{what}: expected a string or an {n}x{n} grid of integers") from None
        if arr.size != n * n or arr.dtype.kind not in "iu" or ((arr < 0) | (arr > n)).any():
            raise TaskInputError(f"{what}: expected {n * n} integers 0..{n} (0 blank), got shape {arr.shape}")
        return arr.reshape(-1).astype(np.int64)

    def encode_input(self, obj: Any) -> np.ndarray:
        """Partial square -> tokens [n*n].  A symbol given twice in a row or column raises TaskInputError; a
        partial square without any completion is accepted (``solutions`` is then empty)."""
        g = self._parse(obj, "square").reshape(self.n, self.n)
        for kind, lines in (("row", g), ("column", g.T)):
            for i, line in enumerate(lines, 1):
                given = line[line > 0]
                if len(set(given.tolist())) < len(given):
                    raise TaskInputError(f"square: {kind} {i} holds a symbol twice")
        return np.where(g > 0, g + 1, BLANK).reshape(-1)

    def encode_output(self, obj: Any) -> np.ndarray:
        """Complete square -> tokens [n*n]; checks the format only (``verify`` judges validity)."""
        g = self._parse(obj, "answer")
        if (g == 0).any():
            raise TaskInputError("answer: every cell must hold a symbol")
        return g + 1

    def decode_output(self, tokens: np.ndarray) -> str:
        """Tokens -> n lines of digits ('.' for a token that is not a symbol)."""
        t = np.asarray(tokens).reshape(-1)
        if t.size != self.out_len:
            raise TaskInputError(f"{self.name}: answer has {t.size} tokens, expected {self.out_len}")
        return "\n".join("".join(str(v - 1) if 2 <= v <= self.n + 1 else "." for v in row)
                         for row in t.reshape(self.n, self.n).tolist())

    # --- checking ---------------------------------------------------------------------------
    def _tokens(self, a: Any, allowed: np.ndarray) -> np.ndarray | None:
        try:
            arr = np.asarray(a)
        except Exception:
            return None
        if arr.shape != (self.seq_len,) or arr.dtype.kind not in "iu" or not np.isin(arr, allowed).all():
            return None
        return arr.astype(np.int64)

    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        """``y`` is a Latin square (every symbol once per row and column) that keeps the givens of ``x``."""
        xt = self._tokens(x, np.arange(1, self.n + 2))
        yt = self._tokens(y, np.arange(2, self.n + 2))
        if xt is None or yt is None:
            return False
        g = yt.reshape(self.n, self.n)
        want = np.arange(2, self.n + 2)
        rows_ok = (np.sort(g, axis=1) == want).all() and (np.sort(g.T, axis=1) == want).all()
        return bool(rows_ok and (yt[xt > BLANK] == xt[xt > BLANK]).all())

    def solutions(self, x: np.ndarray) -> np.ndarray:
        """All completions of ``x`` (the squares that keep its givens), sorted; empty for a malformed ``x``."""
        xt = self._tokens(x, np.arange(1, self.n + 2))
        if xt is None:
            return np.empty((0, self.out_len), dtype=np.int64)
        given = xt > BLANK
        return self._squares[(self._squares[:, given] == xt[given]).all(axis=1)].copy()

    # --- analysis hooks (tasks.base.Task) -----------------------------------------------------
    drawing_key = "black = given in the input, blue = filled in, red = a given the sample changed"

    def answer_statistics(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Token counts plus ``repeated symbols``: n minus the distinct symbols, summed over rows and columns
        (0 for every Latin square)."""
        out = super().answer_statistics(x, y)
        g = np.asarray(y).reshape(*np.shape(y)[:-1], self.n, self.n)
        symbols = np.arange(2, self.n + 2)
        present = lambda axis: (g[..., None] == symbols).any(axis=axis).sum(-1)  # noqa: E731
        out["repeated symbols"] = (2 * self.n * self.n - present(-2).sum(-1) - present(-3).sum(-1))
        return out

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """The square; givens bold (black kept, red changed), filled-in symbols blue."""
        symbol_grid(ax, x, answer, self.n, self.n, lambda t: str(t - 1) if 2 <= t <= self.n + 1 else "?",
                    lambda t: t > BLANK)


register("latin-4", lambda: LatinSquareTask(4))
