"""The one task interface used by the trainer, the evaluator and the analysis (gram-paper.md §5).

A task turns user objects (boards, graphs, grids) into fixed-length integer token sequences and back,
verifies answers, knows the exact set of valid answers where it can be enumerated, and builds
deterministic data splits.  ``tasks/`` needs neither the model nor the analysis: numpy, networkx and
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

    @abc.abstractmethod
    def decode_output(self, tokens: np.ndarray) -> Any:
        """int64 [out_len] -> user answer object (the inverse of ``encode_output`` on valid answers)."""

    # --- checking ---------------------------------------------------------------------------
    @abc.abstractmethod
    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Is answer tokens ``y`` a valid answer for input tokens ``x``?  Never raises on bad tokens."""

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

    def metrics(self, x: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        """Task metrics for unique inputs ``x`` [g, seq_len] and samples [g, N, out_len].

        Default: ``accuracy`` (fraction of samples that verify), ``coverage`` (distinct valid canonical
        answers / all valid answers, averaged over inputs, when ``solutions`` is enumerable),
        ``coverage_max`` (the most any N samples can cover: min(N, |solutions|) / |solutions|, averaged over
        inputs; below 1 when inputs have more than N answers) and ``distinct_valid`` (mean number of distinct
        valid answers per input).
        """
        valid = np.array([[self.verify(xi, s) for s in si] for xi, si in zip(x, samples)], dtype=bool)
        out: dict[str, float] = {"accuracy": float(valid.mean()) if valid.size else 0.0}
        distinct, cover, ceiling = [], [], []
        for xi, si, vi in zip(x, samples, valid):
            found = {tuple(self.canonical(s).tolist()) for s, ok in zip(si, vi) if ok}
            distinct.append(len(found))
            sols = self.solutions(xi)
            if sols is not None and len(sols):
                cover.append(len(found) / len(sols))
                ceiling.append(min(len(si), len(sols)) / len(sols))
        out["distinct_valid"] = float(np.mean(distinct)) if distinct else 0.0
        if cover:
            out["coverage"] = float(np.mean(cover))
            out["coverage_max"] = float(np.mean(ceiling))
        return out
