"""Unconditional generation tasks (gram-paper.md §1.5, §4, §5.1): blank-board Sudoku and binary images.

* ``sudoku-gen-4`` / ``sudoku-gen-9`` — the input is the all-blank board (tokens as in
  :mod:`tasks.sudoku`), the target a complete valid grid.  4x4: the whole grid space (288 grids) is
  enumerated, so ``solutions(blank)`` is exact and coverage is measurable.  9x9: ``N = 5000`` training
  and 500 test grids from the seeded random-grid generator (the paper samples 50K solution grids of the
  Sudoku-Extreme train split, which the project does not have).  No augmentation (gram-paper.md §4).
* ``digits`` — the 8x8 digits that ship with scikit-learn (optional extra ``images``), scaled by 1/16
  and thresholded at 0.5: tokens 1 black (background), 2 white (ink), 64 tokens, as the binarised MNIST
  of gram-paper.md §4.  MNIST itself: :func:`read_idx` reads IDX files the user already has (nothing is
  downloaded), :func:`binarize` thresholds pixels/255 at 0.5 and :func:`mnist_task` builds the task
  (784 tokens; the 2x2 patching of gram-paper.md §1.4 belongs to the model).  The input is an all-black
  canvas, the constant "empty conditioning" of gram-paper.md §1.5.

Metrics (gram-paper.md §4, App. D.5) pool every sample, since every input is the same constant board:
``validity`` (fraction of valid outputs), ``uniqueness`` (distinct outputs among the valid ones) and,
for 4x4 Sudoku, ``coverage`` (distinct valid grids / 288).
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gram_tasks import register
from gram_tasks.base import Split, Task, TaskInputError
from gram_tasks.files import IDX_LIMIT, read_limited
from gram_tasks.sudoku import SudokuTask, to_grid, valid_grids
from gram_tasks.sudoku_solver import cell_name, enumerate_grids, random_grid

BLACK, WHITE = 1, 2
GEN_SIZES = {9: (5000, 500)}  # random (train, test) grids for 9x9; 4x4 uses the 288 enumerated grids
DIGITS_TEST = 297  # of the 1,797 scikit-learn digits; the other 1,500 train
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _constant_split(inp: np.ndarray, y: np.ndarray, solutions: list[np.ndarray] | None, meta: dict) -> Split:
    """Every row has the same constant input ``inp``; ``y`` holds the targets."""
    x = np.repeat(inp[None, :], len(y), axis=0)
    return Split(x=x, y=y, group=np.zeros(len(y), dtype=np.int64), inputs=inp[None, :].copy(),
                 solutions=solutions, meta=meta)


def _pooled(ok: np.ndarray, samples: np.ndarray) -> dict[str, float]:
    """``validity``/``accuracy``, ``uniqueness`` and ``distinct_valid`` over all samples pooled."""
    good = samples[ok]
    distinct = len(np.unique(good, axis=0)) if len(good) else 0
    validity = float(ok.mean()) if ok.size else 0.0
    return {"accuracy": validity, "validity": validity, "distinct_valid": float(distinct),
            "uniqueness": distinct / len(good) if len(good) else 0.0}


class SudokuGenTask(SudokuTask):
    """Sample a complete ``n x n`` Sudoku grid from a blank board (``sudoku-gen-N``)."""

    def __init__(self, n: int, n_train: int | None = None, n_test: int | None = None,
                 data_path: str | Path | None = None) -> None:
        super().__init__(n, n_train, n_test, data_path=data_path)
        self.name = f"sudoku-gen-{n}"

    def blank(self) -> np.ndarray:
        return np.ones(self.seq_len, dtype=np.int64)

    def encode_input(self, obj: Any = None) -> np.ndarray:
        """``None`` or a blank board -> the blank-board tokens; any given digit is rejected."""
        if obj is None:
            return self.blank()
        grid = to_grid(obj, self.n, "board")
        given = np.flatnonzero(grid)
        if len(given):
            raise TaskInputError(f"board: unconditional generation takes a blank board, but cell "
                                 f"{cell_name(int(given[0]), self.n)} is given")
        return grid + 1

    def solutions(self, x: np.ndarray) -> np.ndarray | None:
        """4x4: every completion (all 288 grids for the blank board); 9x9: None (about 6.7e21 grids)."""
        return super().solutions(x) if self.n == 4 else None

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """No augmentation (gram-paper.md §4)."""
        return x, y

    def build(self, seed: int = 0) -> dict[str, Split]:
        """4x4: train on ``n_train`` seeded grids (default all 288), test on all 288 (``meta['held_out']``
        lists the grids absent from train).  9x9: 5000 train / 500 test random grids, disjoint; or,
        with ``data_path``, the solution grids of that file (:meth:`build_from_file`)."""
        if self.data_path is not None:
            return self.build_from_file(self.data_path, seed, *GEN_SIZES[self.n])
        if self.n == 4:
            grids = enumerate_grids(4) + 1
            n_train = len(grids) if self.n_train is None else self.n_train
            order = np.random.default_rng(seed).permutation(len(grids))
            train_ids = np.sort(order[:n_train])
            held_out = np.setdiff1d(np.arange(len(grids)), train_ids)
            meta = {"source": "enumerated", "grid_space": len(grids)}
            return {
                "train": _constant_split(self.blank(), grids[train_ids], [grids], dict(meta)),
                "test": _constant_split(self.blank(), grids, [grids], {**meta, "held_out": held_out}),
            }
        n_train, n_test = GEN_SIZES[self.n]
        n_train = n_train if self.n_train is None else self.n_train
        n_test = n_test if self.n_test is None else self.n_test
        train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 100 + self.n]).spawn(2))
        seen: set[bytes] = set()
        out = {}
        for name, count, rng in (("train", n_train, train_rng), ("test", n_test, test_rng)):
            grids = []
            while len(grids) < count:
                g = random_grid(self.n, rng) + 1
                if g.tobytes() not in seen:
                    seen.add(g.tobytes())
                    grids.append(g)
            y = np.asarray(grids, dtype=np.int64).reshape(-1, self.out_len)
            out[name] = _constant_split(self.blank(), y, None, {"source": "generated"})
        return out

    def build_from_file(self, path: str | Path, seed: int = 0, n_train: int = 5000, n_test: int | None = 500,
                        limit: int | None = None, rate: bool = False, shuffle: bool = True) -> dict[str, Split]:
        """The paper's protocol (gram-paper.md §4): solution grids of a puzzle file (tdoku list or
        Sudoku-Extreme CSV, split as in :meth:`SudokuTask.build_from_file`) with the clues discarded."""
        splits = super().build_from_file(path, seed, n_train, n_test, limit, rate, shuffle)
        meta = {"source": Path(path).name}
        return {name: _constant_split(self.blank(), split.y, None, dict(meta)) for name, split in splits.items()}

    def stats(self, seed: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.name, "vocab_size": self.vocab_size, "seq_len": self.seq_len}
        for name, split in self.build(seed).items():
            out[name] = {"grids": len(split), "distinct": int(len(np.unique(split.y, axis=0)))}
        if self.n == 4:
            out["grid_space"] = 288
        return out

    def metrics(self, x: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        """Pooled ``validity`` (= ``accuracy``), ``uniqueness``, ``distinct_valid``; 4x4 adds
        ``coverage`` = distinct valid grids / 288 (gram-paper.md §4, App. D.5)."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.seq_len)
        s = np.asarray(samples, dtype=np.int64).reshape(len(x), -1, self.out_len)
        ok = (valid_grids(s.reshape(-1, self.out_len), self.n).reshape(s.shape[:2])
              & np.all((x[:, None, :] < 2) | (s == x[:, None, :]), axis=-1))
        out = _pooled(ok.reshape(-1), s.reshape(-1, self.out_len))
        if self.n == 4:
            out["coverage"] = out["distinct_valid"] / 288
        return out


# --- binary images --------------------------------------------------------------------------------


def binarize(images: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Images [..., H, W] -> int64 tokens [..., H*W]: 2 (white) where pixel/max_value > 0.5, else 1."""
    a = np.asarray(images, dtype=np.float64)
    return np.where(a / max_value > 0.5, WHITE, BLACK).astype(np.int64).reshape(*a.shape[:-2], -1)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST format; gzip-compressed accepted) into a native-endian array."""
    try:
        raw = read_limited(path, "IDX", IDX_LIMIT)
    except OSError as err:
        raise TaskInputError(f"cannot read IDX file {str(path)!r}: {err.strerror or err}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(IDX_LIMIT + 1)
        except (OSError, EOFError) as err:
            raise TaskInputError(f"{path}: corrupt gzip data ({err})") from None
    if len(raw) > IDX_LIMIT:
        raise TaskInputError(f"{path}: decompresses to more than the {IDX_LIMIT >> 20} MiB limit for IDX files")
    if len(raw) < 4:
        raise TaskInputError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    if raw[0] or raw[1] or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise TaskInputError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()})")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise TaskInputError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {start})")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(dims, dtype=np.int64))
    have, want = len(raw) - start, count * dtype.itemsize
    if have != want:
        what = "truncated" if have < want else "has trailing bytes"
        raise TaskInputError(f"{path}: IDX data {what}: dimensions {dims} need {want} bytes, found {have}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(dims).astype(dtype.newbyteorder("="))


class BinaryImageTask(Task):
    """Sample a ``side x side`` binary image from an all-black canvas; ``loader(seed)`` returns the
    train and test token arrays [m, side*side] (tokens 1/2) and their labels (or None)."""

    vocab_size = 3

    def __init__(self, name: str, side: int, loader: Callable[[int], tuple]) -> None:
        self.name, self.side = name, side
        self.seq_len = self.out_len = side * side
        self._loader = loader

    def blank(self) -> np.ndarray:
        return np.full(self.seq_len, BLACK, dtype=np.int64)

    def encode_input(self, obj: Any = None) -> np.ndarray:
        """``None`` (or an all-black image) -> the constant all-black canvas."""
        if obj is None:
            return self.blank()
        tokens = self.encode_output(obj)
        if (tokens != BLACK).any():
            raise TaskInputError(f"{self.name}: unconditional generation takes an empty (all-black) canvas")
        return tokens

    def encode_output(self, obj: Any) -> np.ndarray:
        """``side`` lines of ``.``/``#`` (the ``decode_output`` form), or an array of 0/1 pixels."""
        if isinstance(obj, str):
            obj = [[{".": 0, "#": 1}.get(ch, -1) for ch in line] for line in obj.strip().splitlines()]
        try:
            a = np.asarray(obj, dtype=np.float64)
        except (ValueError, TypeError):
            raise TaskInputError(f"{self.name}: expected a {self.side}x{self.side} binary image") from None
        if a.size != self.seq_len:
            raise TaskInputError(f"{self.name}: expected {self.seq_len} pixels, got {a.size}")
        bad = np.flatnonzero((a != 0) & (a != 1))
        if len(bad):
            raise TaskInputError(f"{self.name}: pixel {int(bad[0])} is not 0/1 (or '.'/'#')")
        return np.where(a.reshape(-1) == 1, WHITE, BLACK).astype(np.int64)

    def decode_output(self, tokens: np.ndarray) -> str:
        """Tokens -> ``side`` lines, ``.`` black, ``#`` white, ``?`` any other token."""
        t = np.asarray(tokens).reshape(-1)
        if t.size != self.out_len:
            raise TaskInputError(f"{self.name}: image has {t.size} tokens, expected {self.out_len}")
        sym = {BLACK: ".", WHITE: "#"}
        return "\n".join("".join(sym.get(int(v), "?") for v in row) for row in t.reshape(self.side, self.side))

    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Any image of black/white tokens is valid."""
        y = np.asarray(y).reshape(-1)
        return y.size == self.out_len and bool(np.isin(y, (BLACK, WHITE)).all())

    def build(self, seed: int = 0) -> dict[str, Split]:
        train, test, train_labels, test_labels = self._loader(seed)
        return {
            "train": _constant_split(self.blank(), train, None, {"labels": train_labels}),
            "test": _constant_split(self.blank(), test, None, {"labels": test_labels}),
        }

    def stats(self, seed: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.name, "vocab_size": self.vocab_size, "seq_len": self.seq_len}
        for name, split in self.build(seed).items():
            out[name] = {"images": len(split), "white_fraction": float((split.y == WHITE).mean())}
        return out

    def metrics(self, x: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        """Pooled ``validity`` (black/white tokens only), ``uniqueness``, ``distinct_valid`` and
        ``white_fraction`` of the valid samples (compare with ``stats``).  IS/FID need a classifier
        and live outside ``tasks/``."""
        s = np.asarray(samples, dtype=np.int64).reshape(-1, self.out_len)
        ok = np.isin(s, (BLACK, WHITE)).all(axis=1)
        out = _pooled(ok, s)
        out["white_fraction"] = float((s[ok] == WHITE).mean()) if ok.any() else 0.0
        return out

    drawing_key = "black and white pixels as sampled; grey for any other token"

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """The image: black and white pixels, grey for a token that is neither (tasks.base.Task.draw)."""
        t = np.asarray(answer).reshape(self.side, self.side)
        ax.imshow(np.where(t == WHITE, 1.0, np.where(t == BLACK, 0.0, 0.5)), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")


def _digits(seed: int) -> tuple:
    """scikit-learn's 8x8 digits, binarised; a seeded split of 1,500 train / 297 test."""
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        raise TaskInputError("task 'digits' needs scikit-learn: install the optional extra `images` "
                             "(pip install 'gram_pyro[images]')") from None
    data = load_digits()
    tokens = binarize(data.images, 16.0)
    order = np.random.default_rng(seed).permutation(len(tokens))
    test, train = np.sort(order[:DIGITS_TEST]), np.sort(order[DIGITS_TEST:])
    return tokens[train], tokens[test], data.target[train], data.target[test]


def mnist_task(train_images: str | Path, test_images: str | Path, train_labels: str | Path | None = None,
               test_labels: str | Path | None = None) -> BinaryImageTask:
    """A binarised-MNIST generation task (``mnist``, 784 tokens) from IDX files on disk."""
    def load(seed: int) -> tuple:
        arrays = []
        for path in (train_images, test_images):
            images = read_idx(path)
            if images.ndim != 3 or images.shape[1:] != (28, 28):
                raise TaskInputError(f"{path}: expected images of shape [m, 28, 28], got {list(images.shape)}")
            arrays.append(binarize(images))
        for path, images in zip((train_labels, test_labels), list(arrays)):
            labels = None if path is None else read_idx(path)
            if labels is not None and labels.shape != (len(images),):
                raise TaskInputError(f"{path}: expected {len(images)} labels, got shape {list(labels.shape)}")
            arrays.append(labels)
        return tuple(arrays)

    return BinaryImageTask("mnist", 28, load)


register("sudoku-gen-4", lambda: SudokuGenTask(4))
register("sudoku-gen-9", lambda: SudokuGenTask(9))
register("digits", lambda: BinaryImageTask("digits", 8, _digits))
