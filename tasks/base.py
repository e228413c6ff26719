"""The one task interface used by the trainer, the evaluator and the analysis (gram-paper.md §5).

A task turns user objects (boards, graphs, grids) into fixed-length integer token sequences and back,
verifies answers, knows the exact set of valid answers where it can be enumerated, and builds
deterministic data splits.  :class:`Task` is the one implementation of validity, distinct (canonical)
answers and coverage used by the evaluator, the CLI and the analysis, and each task supplies the answer
statistics and drawings the report shows (docs/adding_a_task.md), so a new task touches ``tasks/`` only.  ``tasks/`` needs neither the model nor the analysis: numpy, networkx and
python-sat only.

Token conventions (gram-paper.md §5.1): token 0 is padding everywhere; a task's input sequence has
``seq_len`` tokens and its answer ``out_len`` tokens (``out_len <= seq_len``; the model decodes the
first ``out_len`` content positions).  Inputs and answers share one vocabulary of ``vocab_size``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gram_tasks.drawing import token_grid


class TaskInputError(ValueError):
    """Bad user input: the message is one line that names the problem (line, field or value)."""


@dataclass(frozen=True)
class Split:
    """One data split.

    ``x``: int64 [n, seq_len] inputs; ``y``: int64 [n, out_len] targets (one valid answer per row);
    ``group``: int64 [n], the index of the row's unique input in ``inputs`` (several rows may share an
    input when it has several valid answers); ``inputs``: int64 [g, seq_len] unique inputs;
    ``solutions``: for each unique input, int64 [s_i, out_len] all valid answers (canonical forms where
    the task defines them), or ``None`` where the set is not enumerable.
    """

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    inputs: np.ndarray
    solutions: list[np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])


class Task(abc.ABC):
    """A reasoning or generation task.  Subclasses set the class attributes and implement the methods."""

    name: str
    vocab_size: int
    seq_len: int
    out_len: int

    # --- encoding ---------------------------------------------------------------------------
    @abc.abstractmethod
    def encode_input(self, obj: Any) -> np.ndarray:
        """User object (board, graph, puzzle string...) -> int64 [seq_len].  Raises TaskInputError."""

    @abc.abstractmethod
    def encode_output(self, obj: Any) -> np.ndarray:
        """User answer object -> int64 [out_len].  Raises TaskInputError."""

    def read_input_file(self, content: str, source: str) -> Any:
        """The user object in the text of file ``source`` (``gram solve RUN FILE``).  Default: the text itself,
        which ``encode_input`` then reads; graph colouring parses DIMACS here."""
        return content

    @abc.abstractmethod
    def decode_output(self, tokens: np.ndarray) -> Any:
        """int64 [out_len] -> user answer object (the inverse of ``encode_output`` on valid answers)."""

    # --- checking ---------------------------------------------------------------------------
    @abc.abstractmethod
    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Is answer tokens ``y`` a valid answer for input tokens ``x``?  Never raises on bad tokens."""

    def flat_pair(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(x, y) flattened to int64 tokens when they have ``seq_len`` and ``out_len`` tokens, else None: the first
        check of a ``verify`` that never raises."""
        try:
            x = np.asarray(x, dtype=np.int64).reshape(-1)
            y = np.asarray(y, dtype=np.int64).reshape(-1)
        except (ValueError, TypeError):
            return None
        return (x, y) if x.shape == (self.seq_len,) and y.shape == (self.out_len,) else None

    def solutions(self, x: np.ndarray) -> np.ndarray | None:
        """All valid answers of ``x`` as int64 [s, out_len] (canonical where defined), or None."""
        return None

    def canonical(self, y: np.ndarray) -> np.ndarray:
        """Canonical form of an answer (e.g. colour permutation removed).  Identity by default."""
        return y

    # --- data -------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, seed: int = 0) -> dict[str, Split]:
        """Deterministic splits, at least ``{"train": ..., "test": ...}``."""

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Apply one random symmetry per row, identically to input and answer.  Identity by default."""
        return x, y

    @abc.abstractmethod
    def stats(self, seed: int = 0) -> dict[str, Any]:
        """Counts for ``gram data TASK --stats`` (JSON-serialisable)."""

    # --- answers: validity, distinct answers, coverage (the one implementation; gram-paper.md §5.6) ---
    def validity(self, x: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """``verify`` of every sample: x [G, seq_len], samples [G, N, out_len] -> bool [G, N].

        A task may override it with a vectorised check that gives the same answers (Sudoku does)."""
        samples = np.asarray(samples)
        return np.array([[self.verify(xi, s) for s in si] for xi, si in zip(x, samples)], dtype=bool).reshape(
            samples.shape[:2])

    def answer_key(self, y: np.ndarray) -> bytes:
        """The canonical form of answer ``y`` as bytes: equal keys are one answer up to the task's symmetries."""
        return np.asarray(self.canonical(y), dtype=np.int64).tobytes()

    def distinct_valid(self, samples: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Distinct valid answers (canonical forms) per input: samples [G, N, L], valid [G, N] -> int [G]."""
        return np.array([len({self.answer_key(s) for s, ok in zip(si, vi) if ok}) for si, vi in zip(samples, valid)],
                        dtype=np.int64)

    def coverage_at(self, samples: np.ndarray, valid: np.ndarray, solutions: list | None, widths) -> np.ndarray:
        """Exact coverage@N (gram-paper.md §3.1): distinct valid canonical answers among the first N samples over
        the size of the input's solution set; [G, len(widths)], NaN where the set is unknown or empty."""
        out = np.full((len(samples), len(widths)), np.nan)
        for g, (si, vi) in enumerate(zip(samples, valid)):
            sols = None if solutions is None else solutions[g]
            if sols is None or not len(sols):
                continue
            keys = [self.answer_key(s) if ok else None for s, ok in zip(si, vi)]
            for j, n in enumerate(widths):
                out[g, j] = len({k for k in keys[:n] if k is not None}) / len(sols)
        return out

    def answer_counts(self, x: np.ndarray, samples: np.ndarray) -> tuple[list[tuple[np.ndarray, int]], int]:
        """For one input ``x`` and its samples [N, L]: the distinct valid answers (canonical forms) with how many
        samples found each, most found first (ties in order of first appearance), and the number of invalid ones."""
        samples = np.asarray(samples)
        valid = self.validity(np.asarray(x)[None], samples[None])[0]
        found: dict[bytes, list] = {}
        for s, ok in zip(samples, valid):
            if ok:
                entry = found.setdefault(self.answer_key(s), [np.asarray(self.canonical(s)), 0])
                entry[1] += 1
        ranked = sorted(found.values(), key=lambda e: -e[1])  # stable: ties stay in order of first appearance
        return [(a, c) for a, c in ranked], int((~valid).sum())

    def metrics(self, x: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        """Task metrics for unique inputs ``x`` [g, seq_len] and samples [g, N, out_len].

        Default: ``accuracy`` (fraction of samples that verify), ``coverage`` (distinct valid canonical
        answers / all valid answers, averaged over inputs, when ``solutions`` is enumerable),
        ``coverage_max`` (the most any N samples can cover: min(N, |solutions|) / |solutions|, averaged over
        inputs; below 1 when inputs have more than N answers) and ``distinct_valid`` (mean number of distinct
        valid answers per input).
        """
        samples = np.asarray(samples)
        valid = self.validity(x, samples)
        out: dict[str, float] = {"accuracy": float(valid.mean()) if valid.size else 0.0}
        distinct = self.distinct_valid(samples, valid)
        out["distinct_valid"] = float(distinct.mean()) if distinct.size else 0.0
        sols = [self.solutions(xi) for xi in x]
        cover = self.coverage_at(samples, valid, sols, [samples.shape[1]])[:, 0]
        known = np.isfinite(cover)
        if known.any():
            sizes = np.array([len(s) for s, k in zip(sols, known) if k])
            out["coverage"] = float(np.mean(cover[known]))
            out["coverage_max"] = float(np.mean(np.minimum(samples.shape[1], sizes) / sizes))
        return out

    # --- analysis hooks: predictive-check statistics and drawing (docs/adding_a_task.md) ------------
    def answer_statistics(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Statistics T(y) of answers y [G, ..., out_len] for inputs x [G, seq_len], each [G, ...], for the
        posterior predictive checks (gram-paper.md §5.6): ``count of token v`` for every token v >= 1.
        Tasks add their own (conflict edges, queens placed, ...) by extending this dict."""
        counts = token_counts(y, self.vocab_size)
        return {f"count of token {v}": counts[..., v] for v in range(1, self.vocab_size)}

    draw_height: float = 2.2
    """Height in inches of one drawn answer in the report's solution gallery."""
    draws_input: bool = False
    """Whether the gallery shows the input in a panel of its own (:meth:`draw_input`); board tasks show the
    givens inside every drawn answer instead."""
    drawing_key: str = "colour = token value, numbers shown on small grids"
    """One sentence for the gallery caption: how to read :meth:`draw`'s pictures."""

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """Draw answer tokens [out_len] on matplotlib axes ``ax`` (given input ``x`` where known).  Call only
        methods of ``ax``: ``tasks/`` never imports matplotlib.  Default: a heat map of the tokens."""
        token_grid(ax, answer)

    def draw_input(self, ax, x: np.ndarray) -> None:
        """Draw input tokens [seq_len] (used when ``draws_input``).  Default: a heat map of the tokens."""
        token_grid(ax, x)


def token_counts(y: np.ndarray, vocab_size: int) -> np.ndarray:
    """Count of every token per answer: [..., L] -> [..., V]."""
    return (np.asarray(y)[..., None] == np.arange(vocab_size)).sum(axis=-2)
