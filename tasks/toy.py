"""Built-in toy task: permutation completion (a tiny multi-solution CSP for demos and tests).

Input: a row of ``n`` cells, some holding a digit 1..n and the rest blank.  A valid answer is a
permutation of 1..n that keeps every given digit, so an input with ``b`` blanks has ``b!`` valid
answers.  Like N-Queens (gram-paper.md §5.4), a deterministic model can only output one of them,
while GRAM can cover the set.  Tokens: 0 pad, 1 blank, digit d -> d + 1.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from gram_tasks import register
from gram_tasks.base import Split, Task, TaskInputError
from gram_tasks.drawing import symbol_grid


class PermutationTask(Task):
    """Complete a partially given permutation of 1..n (``toy-perm-N``)."""

    def __init__(self, n: int = 4, test_fraction: float = 0.25):
        self.n = n
        self.name = f"toy-perm-{n}"
        self.vocab_size = n + 2
        self.seq_len = n
        self.out_len = n
        self.test_fraction = test_fraction
        self._perms = np.array(list(itertools.permutations(range(1, n + 1))), dtype=np.int64) + 1

    def encode_input(self, obj: Any) -> np.ndarray:
        text = str(obj).strip()
        if len(text) != self.n:
            raise TaskInputError(f"{self.name}: expected {self.n} characters, got {len(text)}")
        out = np.ones(self.n, dtype=np.int64)
        for i, ch in enumerate(text):
            if ch in ".0":
                continue
            if ch not in "123456789"[: self.n]:
                raise TaskInputError(f"{self.name}: cell {i + 1}: bad character {ch!r} (use 1-{self.n} or '.')")
            out[i] = int(ch) + 1
        given = out[out > 1]
        if len(set(given.tolist())) != len(given):
            raise TaskInputError(f"{self.name}: a digit is given twice")
        return out

    def encode_output(self, obj: Any) -> np.ndarray:
        y = self.encode_input(obj)
        if (y == 1).any():
            raise TaskInputError(f"{self.name}: an answer must fill every cell")
        return y

    def decode_output(self, tokens: np.ndarray) -> str:
        return "".join(str(int(t) - 1) if t >= 2 else "." for t in tokens)

    def _row(self, a) -> np.ndarray | None:
        """``a`` as an int64 [n] token row, or None when it is not one."""
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError):
            return None
        if arr.shape != (self.n,) or arr.dtype.kind not in "iuf":
            return None
        if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            return None
        return arr.astype(np.int64)

    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        x, y = self._row(x), self._row(y)
        if x is None or y is None or sorted(y.tolist()) != list(range(2, self.n + 2)):
            return False
        given = x >= 2
        return bool((y[given] == x[given]).all())

    def solutions(self, x: np.ndarray) -> np.ndarray:
        x = self._row(x)
        if x is None:
            return np.empty((0, self.n), dtype=np.int64)
        given = x >= 2
        keep = (self._perms[:, given] == x[given]).all(axis=1)
        return self._perms[keep]

    def _all_inputs(self) -> np.ndarray:
        """Every partial row with at least one blank and at least one given digit."""
        rows = set()
        for p in self._perms:
            for mask in itertools.product([False, True], repeat=self.n):
                if 0 < sum(mask) < self.n:
                    rows.add(tuple(np.where(mask, 1, p).tolist()))
        return np.array(sorted(rows), dtype=np.int64)

    def build(self, seed: int = 0) -> dict[str, Split]:
        inputs = self._all_inputs()
        order = np.random.default_rng(seed).permutation(len(inputs))
        n_test = max(1, int(round(self.test_fraction * len(inputs))))
        return {"train": self._split(inputs[order[n_test:]]), "test": self._split(inputs[order[:n_test]])}

    def _split(self, inputs: np.ndarray) -> Split:
        sols = [self.solutions(x) for x in inputs]
        group = np.concatenate([np.full(len(s), i) for i, s in enumerate(sols)]).astype(np.int64)
        return Split(x=inputs[group], y=np.concatenate(sols), group=group, inputs=inputs, solutions=sols)

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Relabel digits with one random permutation per row (validity-preserving)."""
        x, y = x.copy(), y.copy()
        for i in range(len(x)):
            relabel = np.concatenate([[0, 1], rng.permutation(self.n) + 2])
            x[i], y[i] = relabel[x[i]], relabel[y[i]]
        return x, y

    def stats(self, seed: int = 0) -> dict[str, Any]:
        splits = self.build(seed)
        return {
            "task": self.name,
            **{f"{k}_inputs": len(s.inputs) for k, s in splits.items()},
            **{f"{k}_pairs": len(s) for k, s in splits.items()},
        }

    # --- analysis hooks (tasks.base.Task) -------------------------------------------------------
    draw_height = 0.9
    drawing_key = "black = given in the input, blue = filled in, red = a given the sample changed"

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """The row of digits (``·`` for a token that is not one), givens bold."""
        symbol_grid(ax, x, answer, 1, self.n, lambda t: str(t - 1) if t >= 2 else "·", lambda t: t >= 2,
                    fontsize=14)


register("toy-perm-4", lambda: PermutationTask(4))
register("toy-perm-5", lambda: PermutationTask(5))
