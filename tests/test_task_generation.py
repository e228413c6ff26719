"""Unconditional generation tasks and image readers (tasks/generation.py)."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gram_tasks import TaskInputError, get_task
from gram_tasks.generation import BinaryImageTask, SudokuGenTask, binarize, mnist_task, read_idx
from gram_tasks.sudoku import valid_grids
from gram_tasks.sudoku_io import format_grid, write_csv
from gram_tasks.sudoku_solver import enumerate_grids, generate_puzzle, is_complete_valid

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
         np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def one_line_error(fn, *args, match: str = "") -> str:
    with pytest.raises(TaskInputError) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.asarray(a)
    big = a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else a
    return bytes([0, 0, CODES[big.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + big.tobytes()


# --- Sudoku generation ---------------------------------------------------------------------------


def test_enumeration_288():
    grids = enumerate_grids(4)
    assert grids.shape == (288, 16) and len(np.unique(grids, axis=0)) == 288
    assert all(is_complete_valid(g, 4) for g in grids)
    # independent count: stack four row permutations, pruning column and box clashes
    rows = list(itertools.permutations(range(1, 5)))

    def fits(a, b, same_band):
        boxes_ok = len({*a[:2], *b[:2]}) == 4 and len({*a[2:], *b[2:]}) == 4
        return all(p != q for p, q in zip(a, b)) and (boxes_ok or not same_band)

    brute = {
        r1 + r2 + r3 + r4
        for r1 in rows for r2 in rows if fits(r1, r2, True)
        for r3 in rows if fits(r1, r3, False) and fits(r2, r3, False)
        for r4 in rows if fits(r1, r4, False) and fits(r2, r4, False) and fits(r3, r4, True)
    }
    assert brute == {tuple(g.tolist()) for g in grids}


def test_sudoku_gen_4_build_and_solutions():
    task = get_task("sudoku-gen-4")
    assert (task.name, task.vocab_size, task.seq_len, task.out_len) == ("sudoku-gen-4", 6, 16, 16)
    blank = task.encode_input(None)
    assert (blank == 1).all() and (task.encode_input("." * 16) == blank).all()
    sols = task.solutions(blank)
    assert sols.shape == (288, 16) and (sols == enumerate_grids(4) + 1).all()
    splits = task.build(0)
    train, test = splits["train"], splits["test"]
    assert len(train) == 288 and len(test) == 288 and (train.x == 1).all() and (train.group == 0).all()
    assert train.inputs.shape == (1, 16) and (train.solutions[0] == sols).all()
    assert {r.tobytes() for r in train.y} == {r.tobytes() for r in sols}
    assert all(task.verify(blank, y) for y in train.y)
    assert task.augment(train.x, train.y, np.random.default_rng(0))[1] is train.y
    half = SudokuGenTask(4, n_train=100).build(2)
    assert len(half["train"]) == 100 and len(half["test"]) == 288
    held = half["test"].meta["held_out"]
    assert len(held) == 188 and not {r.tobytes() for r in sols[held]} & {r.tobytes() for r in half["train"].y}
    assert (SudokuGenTask(4, n_train=100).build(2)["train"].y == half["train"].y).all()
    one_line_error(task.encode_input, "1" + "." * 15, match="cell r1c1 is given")


def test_sudoku_gen_metrics():
    task = SudokuGenTask(4)
    sols = task.solutions(task.encode_input())
    broken = sols[0].copy()
    broken[0] = broken[1]
    samples = np.concatenate([sols[:10], sols[:5], broken[None], np.zeros((4, 16), dtype=np.int64)])
    m = task.metrics(task.encode_input()[None], samples[None])
    assert m["validity"] == pytest.approx(15 / 20) and m["accuracy"] == m["validity"]
    assert m["uniqueness"] == pytest.approx(10 / 15)
    assert m["distinct_valid"] == 10 and m["coverage"] == pytest.approx(10 / 288)
    full = task.metrics(task.encode_input()[None], sols[None])
    assert full["coverage"] == 1.0 and full["uniqueness"] == 1.0
    none = task.metrics(task.encode_input()[None], np.zeros((1, 3, 16), dtype=np.int64))
    assert none["validity"] == 0.0 and none["uniqueness"] == 0.0


def test_sudoku_gen_9_small():
    task = SudokuGenTask(9, n_train=30, n_test=10)
    splits = task.build(1)
    train, test = splits["train"], splits["test"]
    assert (len(train), len(test)) == (30, 10) and train.solutions is None
    assert valid_grids(np.concatenate([train.y, test.y]), 9).all()
    assert len({r.tobytes() for r in np.concatenate([train.y, test.y])}) == 40
    assert (task.build(1)["train"].y == train.y).all() and not (task.build(2)["train"].y == train.y).all()
    assert task.solutions(task.encode_input()) is None
    m = task.metrics(task.encode_input()[None], np.concatenate([train.y, train.y[:10]])[None])
    assert m["validity"] == 1.0 and m["uniqueness"] == pytest.approx(30 / 40) and "coverage" not in m
    assert task.stats(1)["train"] == {"grids": 30, "distinct": 30}


def test_sudoku_gen_from_file(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [generate_puzzle(4, rng) for _ in range(12)]
    path = tmp_path / "g.csv"
    write_csv(path, np.stack([p for p, _ in pairs]), np.stack([s for _, s in pairs]), [0] * 12, ["x"] * 12)
    splits = SudokuGenTask(4).build_from_file(path, n_train=8, n_test=None)
    assert (len(splits["train"]), len(splits["test"])) == (8, 4)
    assert (splits["train"].x == 1).all() and valid_grids(splits["train"].y, 4).all()


# --- images --------------------------------------------------------------------------------------


def test_digits_registered():
    task = get_task("digits")
    assert (task.vocab_size, task.seq_len, task.out_len) == (3, 64, 64)
    if not HAVE_SKLEARN:
        one_line_error(task.build, 0, match="optional extra `images`")
        return
    splits = task.build(0)
    assert (len(splits["train"]), len(splits["test"])) == (1500, 297)
    assert set(np.unique(splits["train"].y)) == {1, 2}


def test_binarize_threshold():
    img = np.array([[0, 127], [128, 255]], dtype=np.uint8)
    assert binarize(img).tolist() == [1, 1, 2, 2]
    assert binarize(np.array([[[8.0, 9.0]]]), 16.0).tolist() == [[1, 2]]
    assert binarize(np.zeros((3, 5, 4))).shape == (3, 20)


def test_read_idx_good(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    (tmp_path / "img").write_bytes(idx_bytes(images.astype(np.uint8)))
    (tmp_path / "img.gz").write_bytes(gzip.compress(idx_bytes(images.astype(np.uint8))))
    (tmp_path / "lab").write_bytes(idx_bytes(np.array([7, 1, 3], dtype=np.uint8)))
    floats = np.linspace(-1, 1, 6).reshape(2, 3)
    (tmp_path / "f").write_bytes(idx_bytes(floats.astype(">f8")))
    assert (read_idx(tmp_path / "img") == images).all() and (read_idx(tmp_path / "img.gz") == images).all()
    assert read_idx(tmp_path / "lab").tolist() == [7, 1, 3]
    got = read_idx(tmp_path / "f")
    assert got.dtype.isnative and np.allclose(got, floats)
    task = mnist_task(tmp_path / "img", tmp_path / "img.gz", tmp_path / "lab", None)
    splits = task.build(0)
    assert task.seq_len == 784 and len(splits["train"]) == 3 and splits["train"].meta["labels"].tolist() == [7, 1, 3]
    assert (splits["test"].y == binarize(images)).all() and splits["test"].meta["labels"] is None
    one_line_error(mnist_task(tmp_path / "lab", tmp_path / "img").build, 0, match="expected images of shape")
    one_line_error(mnist_task(tmp_path / "img", tmp_path / "img", tmp_path / "f").build, 0, match="expected 3 labels")


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "too short for an IDX header"),
        (b"\x00\x00\x08", "too short"),
        (b"PK\x03\x04" + b"\x00" * 20, "not an IDX file (magic bytes 504b0304)"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "not an IDX file"),
        (b"\x00\x00\x08\x00", "not an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (
            b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + b"\x01" * 5,
            "IDX data truncated: dimensions (2, 3) need 6 bytes, found 5",
        ),
        (b"\x00\x00\x0c\x01\x00\x00\x00\x02" + b"\x01" * 9, "has trailing bytes"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
    ],
)
def test_read_idx_rejects(tmp_path, data, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    one_line_error(read_idx, path, match=match)


def test_read_idx_missing(tmp_path):
    one_line_error(read_idx, tmp_path / "absent", match="cannot read IDX file")


def test_binary_image_task():
    images = np.array([[[0, 1], [1, 1]], [[1, 0], [0, 0]]])
    task = BinaryImageTask("tiny", 2, lambda seed: (binarize(images, 1.0), binarize(images[:1], 1.0), None, None))
    assert (task.encode_input() == 1).all() and (task.encode_input([[0, 0], [0, 0]]) == 1).all()
    one_line_error(task.encode_input, [[0, 1], [0, 0]], match="all-black")
    one_line_error(task.encode_output, [[0, 2], [0, 0]], match="pixel 1 is not 0/1")
    one_line_error(task.encode_output, [0, 1, 1], match="expected 4 pixels, got 3")
    y = task.encode_output(images[0])
    assert y.tolist() == [1, 2, 2, 2] and task.decode_output(y) == ".#\n##"
    assert (task.encode_output(".#\n##") == y).all()
    assert task.verify(task.encode_input(), y) and not task.verify(task.encode_input(), np.array([1, 2, 0, 2]))
    splits = task.build(0)
    assert len(splits["train"]) == 2 and (splits["train"].x == 1).all() and splits["train"].solutions is None
    m = task.metrics(task.encode_input()[None], np.array([[y, y, [1, 1, 1, 1], [0, 1, 1, 1]]]))
    assert m["validity"] == 0.75 and m["uniqueness"] == pytest.approx(2 / 3)
    assert m["white_fraction"] == pytest.approx(6 / 12)
    assert task.stats(0)["train"] == {"images": 2, "white_fraction": 0.5}


# --- property tests ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40))
def test_read_idx_property(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("idx") / "f"
    path.write_bytes(data)
    try:
        out = read_idx(path)
    except TaskInputError as err:
        assert "\n" not in str(err)
        return
    assert data[:2] == b"\x00\x00" and out.ndim == data[3]


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(sorted(CODES, key=str)),
    st.lists(st.integers(0, 4), min_size=1, max_size=3),
    st.integers(0, 2**32 - 1),
)
def test_idx_roundtrip_property(tmp_path_factory, dtype, shape, seed):
    a = (np.random.default_rng(seed).integers(-100, 100, size=shape)).astype(dtype)
    path = tmp_path_factory.mktemp("rt") / "f"
    path.write_bytes(idx_bytes(a))
    got = read_idx(path)
    assert got.shape == a.shape and got.dtype.isnative and (got == a).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=16, max_size=16))
def test_image_encode_decode_property(pixels):
    task = BinaryImageTask("p", 4, lambda seed: None)
    y = task.encode_output(pixels)
    assert (task.encode_output(task.decode_output(y)) == y).all() and task.verify(task.encode_input(), y)
    assert ((y == 2) == (np.array(pixels) == 1)).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 287), min_size=1, max_size=30), st.integers(0, 5))
def test_gen4_metrics_property(ids, n_bad):
    task = SudokuGenTask(4)
    sols = task.solutions(task.encode_input())
    samples = np.concatenate([sols[ids], np.ones((n_bad, 16), dtype=np.int64)])
    m = task.metrics(task.encode_input()[None], samples[None])
    assert m["validity"] == pytest.approx(len(ids) / (len(ids) + n_bad))
    assert m["coverage"] == pytest.approx(len(set(ids)) / 288)
    assert m["uniqueness"] == pytest.approx(len(set(ids)) / len(ids))
    assert format_grid(sols[ids[0]] - 1) == task.decode_output(sols[ids[0]])


# --- slow ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sudoku_gen_9_default_build_slow():
    task = get_task("sudoku-gen-9")
    start = time.perf_counter()
    splits = task.build(0)
    assert time.perf_counter() - start < 60.0
    assert (len(splits["train"]), len(splits["test"])) == (5000, 500)
    y = np.concatenate([splits["train"].y, splits["test"].y])
    assert valid_grids(y, 9).all() and len(np.unique(y, axis=0)) == 5500
