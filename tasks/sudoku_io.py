"""Sudoku readers and writers: board strings, tdoku puzzle lists and the Sudoku-Extreme CSV.

Formats (baselines-and-data.md §1.5, §6.1, §6.2):

* **board string** — ``n*n`` characters in row-major order, ``.`` or ``0`` for a blank, ``1..n`` for a
  digit.
* **tdoku list** — one board string per line; lines starting with ``#`` are comments; blank lines are
  skipped; CRLF line endings are accepted.
* **Sudoku-Extreme CSV** — header ``source,question,answer,rating`` (``question`` and ``answer`` are
  required, the other two optional; extra columns are ignored); ``rating`` is tdoku's backtrack count.

Every error is a one-line :class:`TaskInputError` that names the file, the line and the field or cell.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gram_tasks.base import TaskInputError
from gram_tasks.files import DATA_LIMIT, read_limited
from gram_tasks.sudoku_solver import cell_name, find_conflict

CSV_FIELDS = ("source", "question", "answer", "rating")
_RATING = re.compile(r"-?[0-9]{1,18}")


def parse_grid(text: str, n: int, where: str = "board") -> np.ndarray:
    """Board string -> int64 [n*n] (0 blank, 1..n digits).  Raises TaskInputError naming ``where``."""
    if not isinstance(text, str):
        raise TaskInputError(f"{where}: expected a string of {n * n} cells, got {type(text).__name__}")
    if len(text) != n * n:
        raise TaskInputError(f"{where}: expected {n * n} cells, got {len(text)} characters")
    out = np.zeros(n * n, dtype=np.int64)
    for i, ch in enumerate(text):
        if ch in ".0":
            continue
        if not ("1" <= ch <= "9" and int(ch) <= n):
            raise TaskInputError(
                f"{where}: bad character {ch!r} at cell {cell_name(i, n)} (use 1-{n} for digits, '.' or '0' for blanks)"
            )
        out[i] = int(ch)
    return out


def check_givens(grid: np.ndarray, n: int, where: str = "board") -> None:
    """Raise TaskInputError when a digit repeats in a row, column or box of ``grid``."""
    conflict = find_conflict(grid, n)
    if conflict is not None:
        raise TaskInputError(f"{where}: contradictory givens: {conflict}")


def format_grid(grid: np.ndarray, blank: str = ".") -> str:
    """int [n*n] or [n, n] grid (0 blank) -> board string."""
    return "".join(blank if int(d) == 0 else str(int(d)) for d in np.asarray(grid).reshape(-1))


@dataclass
class PuzzleFile:
    """Puzzles read from one file.  ``answers`` and ``ratings`` are None for tdoku lists."""

    path: str
    puzzles: np.ndarray  # int64 [m, n*n]
    answers: np.ndarray | None  # int64 [m, n*n]
    ratings: np.ndarray | None  # int64 [m]
    sources: list[str]
    lines: np.ndarray  # int64 [m], 1-based line number of each puzzle


def _read_text(path: str | Path, limit: int = DATA_LIMIT) -> str:
    try:
        return read_limited(path, "puzzle", limit).decode("utf-8-sig")
    except OSError as err:
        raise TaskInputError(f"cannot read puzzle file {str(path)!r}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise TaskInputError(f"{path}: not a text file (byte {err.start} is not UTF-8)") from None


def _first_content_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            return line.strip()
    return ""


def read_puzzles(path: str | Path, n: int = 9, limit: int | None = None) -> PuzzleFile:
    """Read a tdoku list or a Sudoku-Extreme CSV (told apart by a ``question`` header); the first
    ``limit`` puzzles only when given.  Givens are checked for contradictions; CSV answers must be
    complete valid grids that keep the givens."""
    text = _read_text(path)
    if "question" in _first_content_line(text).split(","):
        result = _read_csv(text, str(path), n, limit)
    else:
        result = _read_tdoku(text, str(path), n, limit)
    if len(result.puzzles) == 0:
        raise TaskInputError(f"{path}: no puzzles found (empty file or only comments)")
    return result


def _read_tdoku(text: str, path: str, n: int, limit: int | None) -> PuzzleFile:
    puzzles, lines = [], []
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if limit is not None and len(puzzles) >= limit:
            break
        where = f"{path}: line {no}"
        grid = parse_grid(line, n, where)
        check_givens(grid, n, where)
        puzzles.append(grid)
        lines.append(no)
    return PuzzleFile(
        path=path,
        puzzles=np.asarray(puzzles, dtype=np.int64).reshape(-1, n * n),
        answers=None,
        ratings=None,
        sources=[Path(path).name] * len(puzzles),
        lines=np.asarray(lines, dtype=np.int64),
    )


def _read_csv(text: str, path: str, n: int, limit: int | None) -> PuzzleFile:
    header: list[str] | None = None
    puzzles, answers, ratings, sources, lines = [], [], [], [], []
    for no, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#"):  # a comment is decided on the raw line: a quoted "#source" field is data
            continue
        row = next(csv.reader([raw]), [])
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [h.strip() for h in row]
            missing = [f for f in ("question", "answer") if f not in header]
            if missing:
                raise TaskInputError(f"{path}: line {no}: CSV header lacks field(s) {', '.join(missing)}")
            continue
        if limit is not None and len(puzzles) >= limit:
            break
        if len(row) != len(header):
            raise TaskInputError(f"{path}: line {no}: expected {len(header)} fields, got {len(row)}")
        rec = dict(zip(header, (v.strip() for v in row)))
        where = f"{path}: line {no}"
        grid = parse_grid(rec["question"], n, f"{where}: field 'question'")
        check_givens(grid, n, f"{where}: field 'question'")
        answer = parse_grid(rec["answer"], n, f"{where}: field 'answer'")
        _check_answer(grid, answer, n, f"{where}: field 'answer'")
        if "rating" in rec:
            if not _RATING.fullmatch(rec["rating"]):  # ASCII digits only: no "+1", "1_0" or full-width digits
                raise TaskInputError(f"{where}: field 'rating': not an integer: {rec['rating']!r}")
            ratings.append(int(rec["rating"]))
        puzzles.append(grid)
        answers.append(answer)
        sources.append(rec.get("source", Path(path).name))
        lines.append(no)
    return PuzzleFile(
        path=path,
        puzzles=np.asarray(puzzles, dtype=np.int64).reshape(-1, n * n),
        answers=np.asarray(answers, dtype=np.int64).reshape(-1, n * n),
        ratings=np.asarray(ratings, dtype=np.int64) if header and "rating" in header else None,
        sources=sources,
        lines=np.asarray(lines, dtype=np.int64),
    )


def _check_answer(puzzle: np.ndarray, answer: np.ndarray, n: int, where: str) -> None:
    blanks = np.flatnonzero(answer == 0)
    if len(blanks):
        raise TaskInputError(f"{where}: answer is incomplete (cell {cell_name(int(blanks[0]), n)} is blank)")
    check_givens(answer, n, where)
    changed = np.flatnonzero((puzzle != 0) & (puzzle != answer))
    if len(changed):
        c = int(changed[0])
        raise TaskInputError(f"{where}: answer changes the given {puzzle[c]} at {cell_name(c, n)} to {answer[c]}")


def write_csv(
    path: str | Path,
    puzzles: np.ndarray,
    answers: np.ndarray,
    ratings: np.ndarray | list[int],
    sources: list[str],
) -> None:
    """Write puzzles in the Sudoku-Extreme CSV schema (``.`` blanks), readable by :func:`read_puzzles`."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)  # "#source" is data, not a comment
        out.writerow(CSV_FIELDS)
        for p, a, r, s in zip(puzzles, answers, ratings, sources):
            (quoted if s.startswith("#") else out).writerow([s, format_grid(p), format_grid(a), int(r)])
