"""Bad input through the Python API (docs/reliability.md, rows A01-A70): the exception type and its one-line
message.  Task encoders raise ``TaskInputError``, configuration ``ConfigError``, run folders and checkpoints
``CheckpointError`` (all ``ValueError`` subclasses, which the CLI turns into one-line errors).  Rows that name a
bug pin its fix (docs/reliability.md, "Bugs found and fixed"); a row with ``xfail=`` would be a strict xfail for
a bug that is still open (none today)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import networkx as nx
import numpy as np
import pytest

import gram_tasks as tasks
from tests.helpers import tiny_toy_run
from gram_pyro import checkpoint
from gram_pyro.checkpoint import CheckpointError
from gram_cli import api
from gram_pyro.runconfig import ConfigError, RunConfig, build_run_config
from gram_tasks import TaskInputError
from gram_tasks.dimacs import parse_dimacs, read_dimacs
from gram_tasks.generation import read_idx
from gram_tasks.sudoku_io import read_puzzles

SIZES = {"vocab_size": 6, "seq_len": 4, "out_len": 4}
TINY = ["train.batches=2", "train.eval_every=0", "train.eval_inputs=4", "train.eval_width=2"]
Q4 = ".....43..1..2.4."  # a unique-solution 4x4 puzzle and its answer
A4 = "3214143241232341"
A4_SWAPPED = A4.translate(str.maketrans("12", "21"))  # a valid grid that changes the given 1 at r3c2
UNSOLVABLE_9 = "12345678." + "........9" + "." * 63  # r1c9 must be 9, column 9 already has one


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability_api")
    with tiny_toy_run(root, TINY) as toy:
        yield SimpleNamespace(root=root, toy=toy, run=api.load_run(toy))


def task(name):
    return tasks.get_task(name)


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def brc(*overrides, task="toy-perm-4", preset="cpu-tiny"):
    return build_run_config(task, SIZES, preset, list(overrides))


def attacking():
    b = np.zeros((8, 8), dtype=int)
    b[2, 3] = b[5, 6] = 1
    return b


@dataclass
class Row:
    id: str
    call: Callable  # call(env, tmp_path)
    exc: type
    message: str  # "{tmp}" is filled in; must be a substring of the one-line message
    bug: str | None = None  # the fixed bug or observation this row pins (docs/reliability.md)
    xfail: str | None = None  # a bug that is still open: strict xfail with this reason


ROWS = [
    # --- tasks and user boards
    Row("A01", lambda e, t: task("nope"), TaskInputError, "unknown task 'nope'; known tasks: arc, arc-1, arc-2, digits, "),
    Row("A02", lambda e, t: task("nqueens-8").encode_input("........\n" * 7), TaskInputError,
        "board has 7 rows, expected 8 rows of 8 characters (or one string of 64)"),
    Row("A03", lambda e, t: task("nqueens-8").encode_input("..x....." + "." * 56), TaskInputError,
        "row 1, column 3: unexpected character 'x' (use '.' or 'Q')"),
    Row("A04", lambda e, t: task("nqueens-8").encode_input(attacking()), TaskInputError,
        "queens at row 3 column 4 and row 6 column 7 attack each other"),
    Row("A05", lambda e, t: task("nqueens-8").encode_input(np.ones(64, dtype=int)), TaskInputError,
        "board has 64 queens, at most 8 allowed"),
    Row("A06", lambda e, t: task("nqueens-8").encode_input(None), TaskInputError,
        "board array has shape (), expected (8, 8) or (64,)"),
    Row("A07", lambda e, t: task("sudoku-9").encode_input("." * 80), TaskInputError,
        "puzzle: expected 81 cells, got 80 characters"),
    Row("A08", lambda e, t: task("sudoku-9").encode_input("..x" + "." * 78), TaskInputError,
        "puzzle: bad character 'x' at cell r1c3 (use 1-9 for digits, '.' or '0' for blanks)"),
    Row("A09", lambda e, t: task("sudoku-9").encode_input("5" + "." * 8 + "5" + "." * 71), TaskInputError,
        "puzzle: contradictory givens: digit 5 at r2c1 repeats in column 1 (also at r1c1)"),
    Row("A10", lambda e, t: task("sudoku-9").encode_input(UNSOLVABLE_9), TaskInputError,
        "puzzle: the givens do not contradict each other directly, but it has no solution"),
    Row("A11", lambda e, t: task("sudoku-9").encode_input(np.zeros((8, 9), dtype=int)), TaskInputError,
        "puzzle: expected an 9x9 grid or 81 cells, got shape (8, 9)"),
    Row("A12", lambda e, t: task("sudoku-9").encode_input([10] + [0] * 80), TaskInputError,
        "puzzle: cell r1c1 has bad value 10 (use 0 for blank, 1-9)"),
    Row("A13", lambda e, t: task("sudoku-4").encode_output(Q4), TaskInputError,
        "answer: cell r1c1 is blank; answers are full grids"),
    Row("A14", lambda e, t: task("sudoku-gen-4").encode_input("1" + "." * 15), TaskInputError,
        "board: unconditional generation takes a blank board, but cell r1c1 is given"),
    Row("A15", lambda e, t: task("graph-coloring-8").encode_input(nx.complete_graph(4)), TaskInputError,
        "graph with 4 vertices and 6 edges is not 3-colourable"),
    Row("A16", lambda e, t: task("graph-coloring-8").encode_input(nx.path_graph(9)), TaskInputError,
        "graph has 9 vertices, at most 8 allowed"),
    Row("A17", lambda e, t: task("graph-coloring-8").encode_input(nx.DiGraph([(0, 1)])), TaskInputError,
        "graph is directed; pass an undirected networkx.Graph"),
    Row("A18", lambda e, t: task("graph-coloring-8").encode_input(nx.Graph([(0, 0)])), TaskInputError,
        "self-loop on vertex 0"),
    Row("A19", lambda e, t: task("graph-coloring-8").encode_input(None), TaskInputError,
        "expected a networkx.Graph or a DIMACS .col path, got NoneType"),
    Row("A20", lambda e, t: task("graph-coloring-8").encode_output([0, 1, 3, 0, 1, 2, 0, 1]), TaskInputError,
        "vertex 2: colour 3, expected 0..2"),
    Row("A21", lambda e, t: api.solve(e.run, None), TaskInputError,
        "toy-perm-4: cell 1: bad character 'N' (use 1-4 or '.')"),
    # --- DIMACS
    Row("A22", lambda e, t: read_dimacs(t / "missing.col"), TaskInputError,
        "cannot read DIMACS file '{tmp}/missing.col': FileNotFoundError"),
    Row("A23", lambda e, t: read_dimacs(write(t / "bin.col", b"p edge 2 1\n\xff\n")), TaskInputError,
        "cannot read DIMACS file '{tmp}/bin.col': UnicodeDecodeError"),
    Row("A24", lambda e, t: parse_dimacs("e 1 2\np edge 2 1\n"), TaskInputError,
        "<dimacs> line 1: 'e' line before the 'p edge V E' line"),
    Row("A25", lambda e, t: parse_dimacs("p edge 3 2\ne 1 2\n"), TaskInputError,
        "<dimacs> line 1: 'p' line declares 2 edges but the file has 1 'e' lines"),
    Row("A26", lambda e, t: parse_dimacs("p edge 3 0\np edge 3 0\n"), TaskInputError,
        "<dimacs> line 2: second 'p' line (the first is line 1)"),
    Row("A27", lambda e, t: parse_dimacs("c only a comment\n"), TaskInputError, "<dimacs>: missing 'p edge V E' line"),
    # --- Sudoku files
    Row("A28", lambda e, t: read_puzzles(write(t / "a.csv", f"source,question\nx,{Q4}\n"), 4), TaskInputError,
        "{tmp}/a.csv: line 1: CSV header lacks field(s) answer"),
    Row("A29", lambda e, t: read_puzzles(write(t / "b.csv", f"question,answer\n{Q4},{A4_SWAPPED}\n"), 4),
        TaskInputError, "{tmp}/b.csv: line 2: field 'answer': answer changes the given 1 at r3c2 to 2"),
    Row("A30", lambda e, t: read_puzzles(write(t / "c.csv", f"question,answer,rating\n{Q4},{A4},hard\n"), 4),
        TaskInputError, "{tmp}/c.csv: line 2: field 'rating': not an integer: 'hard'"),
    Row("A31", lambda e, t: read_puzzles(write(t / "d.csv", f"question,answer\n{Q4},{A4},extra\n"), 4),
        TaskInputError, "{tmp}/d.csv: line 2: expected 2 fields, got 3"),
    Row("A32", lambda e, t: read_puzzles(t / "missing.txt", 4), TaskInputError,
        "cannot read puzzle file '{tmp}/missing.txt': No such file or directory"),
    Row("A33", lambda e, t: read_puzzles(write(t / "e.txt", f"{Q4}\n{Q4[:-1]}\n"), 4), TaskInputError,
        "{tmp}/e.txt: line 2: expected 16 cells, got 15 characters"),
    # --- IDX
    Row("A34", lambda e, t: read_idx(write(t / "empty.idx", b"")), TaskInputError,
        "{tmp}/empty.idx: 0 bytes is too short for an IDX header"),
    Row("A35", lambda e, t: read_idx(write(t / "zip.idx", b"PK\x03\x04" + bytes(20))), TaskInputError,
        "{tmp}/zip.idx: not an IDX file (magic bytes 504b0304)"),
    Row("A36", lambda e, t: read_idx(write(t / "t.idx", b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(3))),
        TaskInputError, "{tmp}/t.idx: IDX data truncated: dimensions (5,) need 5 bytes, found 3"),
    Row("A37", lambda e, t: read_idx(write(t / "g.idx", gzip.compress(b"\x00\x00\x08\x01")[:-6])), TaskInputError,
        "{tmp}/g.idx: corrupt gzip data"),
    # --- run configuration
    Row("A38", lambda e, t: brc("model.beta=paper"), ConfigError,
        "the paper gives no beta for task 'toy-perm-4'; set model.beta to a number"),
    Row("A39", lambda e, t: brc("train.nan_policy=maybe"), ConfigError,
        "config key train.nan_policy expects stop or skip, got 'maybe'"),
    Row("A40", lambda e, t: brc("model.n_heads=3"), ConfigError, "model: D=32 is not divisible by n_heads=3"),
    Row("A41", lambda e, t: brc("optim.preset=bogus"), ConfigError,
        "unknown preset 'bogus'; known: cpu"),
    Row("A42", lambda e, t: brc("train.device=tpu"), ConfigError,
        "config key train.device expects auto, cpu or cuda, got 'tpu'"),
    Row("A43", lambda e, t: brc("train.checkpoint_every=-1"), ConfigError,
        "config key train.checkpoint_every must be >= 0, got -1"),
    Row("A44", lambda e, t: brc("optim.lr=0"), ConfigError,
        "optim: need finite lr > 0, weight_decay >= 0, clip > 0 and warmup >= 0"),
    Row("A45", lambda e, t: brc("model.alpha=2"), ConfigError, "model: alpha must lie in [0, 1], got 2.0"),
    Row("A46", lambda e, t: brc("train.batches=1.5"), ConfigError, "config key train.batches expects int, got '1.5'"),
    Row("A47", lambda e, t: brc(preset=str(write(t / "p.json", '{"model": {"D": 32,}}'))), ConfigError,
        "cannot parse preset {tmp}/p.json: Expecting property name enclosed in double quotes"),
    Row("A48", lambda e, t: RunConfig.from_dict({"task": "toy-perm-4"}), ConfigError,
        "malformed run configuration: 'model'"),
    # --- run folders and checkpoints
    Row("A49", lambda e, t: api.load_run(t / "missing"), CheckpointError,
        "{tmp}/missing is not a run folder (no config.json)"),
    Row("A50", lambda e, t: api.fit("toy-perm-4", e.toy, "cpu-tiny", TINY + ["model.D=64"], resume=True,
                                    progress=False), CheckpointError,
        "was trained with a different task or model configuration"),
    Row("A51", lambda e, t: api.fit("toy-perm-4", e.toy, "cpu-tiny", TINY, progress=False), CheckpointError,
        "already holds a run; pass --resume to continue it or choose --out"),
    Row("A52", lambda e, t: checkpoint.load(e.toy / "checkpoint.pt", identity="0123456789abcdef"), CheckpointError,
        "checkpoint.pt was written for a different task or model configuration (identity "),
    Row("A53", lambda e, t: checkpoint.load(t), CheckpointError, "{tmp} is a directory, not a checkpoint file"),
    Row("A54", lambda e, t: api.evaluate(e.run, widths=(0, 5)), ValueError,
        "widths must be integers >= 1, got [0, 5]"),
    Row("A55", lambda e, t: api.evaluate(e.run, widths=(1,), depths=(-1,)), ValueError,
        "depths must be integers >= 1, got [-1]"),
    Row("A56", lambda e, t: api.sample(e.run, e.run.task.encode_input("12.."), width=0), ValueError,
        "num_samples (width) must be >= 1, got 0"),
    # --- fixed bugs (docs/reliability.md, "Bugs found and fixed"): what the fixed code does
    Row("A57", lambda e, t: task("toy-perm-4").encode_input("\u00b2..."), TaskInputError,
        "toy-perm-4: cell 1: bad character '\u00b2' (use 1-4 or '.')", bug="B14"),
    Row("A58", lambda e, t: brc("model.bogus\nkey=1"), ConfigError, "unknown config key model.'bogus\\nkey'",
        bug="B16"),
    Row("A59", lambda e, t: brc("optim.betas=0.9"), ConfigError,
        "optim: betas must be two numbers in [0, 1), got (0.9,)", bug="B2"),
    Row("A60", lambda e, t: brc("model.beta=nan"), ConfigError, "model: beta must be a finite number >= 0, got nan",
        bug="B3"),
    Row("A67", lambda e, t: brc("model.n_heads=0"), ConfigError, "model: n_heads must be >= 1, got 0", bug="B20"),
    Row("A68", lambda e, t: brc("model.prior_args=0"), ConfigError,
        "config key model.prior_args expects name=value pairs, got '0'", bug="B17"),
    Row("A61", lambda e, t: api.evaluate(e.run, widths=()), ValueError, "widths must be integers >= 1, got none",
        bug="B5"),
    Row("A62", lambda e, t: api.evaluate(e.run, widths=(1,), split="nope"), ValueError,
        "unknown split 'nope'; this run has train, test", bug="B6"),
    Row("A69", lambda e, t: brc("train.max_skips=-1"), ConfigError,
        "config key train.max_skips must be >= 0, got -1", bug="O10"),
    Row("A70", lambda e, t: api.evaluate(e.run, widths=(1,), max_inputs=-1), ValueError,
        "max_inputs must be >= 1, got -1", bug="B8, O6"),
]


def params(rows):
    return [pytest.param(r, id=r.id, marks=[pytest.mark.xfail(strict=True, reason=r.xfail)] if r.xfail else [])
            for r in rows]


@pytest.mark.parametrize("row", params(ROWS))
def test_api_row(row, env, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CACHE", str(env.root / "cache"))
    with pytest.raises(Exception) as info:
        row.call(env, tmp_path)
    err = info.value
    assert type(err) is row.exc, f"{type(err).__name__}: {err}"
    assert isinstance(err, ValueError)
    message = str(err)
    assert "\n" not in message and message, repr(message)
    assert row.message.format(tmp=tmp_path) in message, message


def test_A63_documented_prior_args_override_is_accepted():
    """docs/usage.md: ``--set prior_args`` takes ``model.prior_args=df=3`` (B17, fixed)."""
    cfg = brc("model.prior=student_t", "model.prior_args=df=3")  # StudentTPrior(cfg, df); other names are refused (H41)
    assert dict(cfg.model.prior_args) == {"df": 3}
    assert RunConfig.from_dict(cfg.to_dict()).identity_hash() == cfg.identity_hash()  # config.json round trip


def test_a_model_field_added_later_leaves_an_earlier_runs_identity_alone():
    """A run's config.json written before a model option existed (the key is absent) loads with the option's
    default and keeps its identity, so its checkpoint still matches; a non-default value changes the identity."""
    cfg = brc()
    old = cfg.to_dict()
    for key in ("free_bits", "pair_bias", "pair_tokens", "pair_token_value", "lprm_on_prior", "prior_carry"):
        del old["model"][key]
    assert RunConfig.from_dict(old).identity_hash() == cfg.identity_hash()
    assert brc("model.free_bits=0.5").identity_hash() != cfg.identity_hash()
    assert brc("model.K=3").identity_hash() != cfg.identity_hash()


def test_A64_well_formed_board_without_completion_is_accepted():
    """Documented (docs/tasks.md): a legal partial board with no completion is not an error; it has no answers."""
    t = task("nqueens-8")
    x = t.encode_input("Q.......\n..Q.....\n" + "........\n" * 6)
    assert len(t.solutions(x)) == 0 and not t.verify(x, t.solutions(np.ones(64, dtype=np.int64))[0])


def test_A65_verify_never_raises_on_malformed_toy_input():
    """docs/tasks.md: ``verify`` never raises; malformed tokens give False."""
    t = task("toy-perm-4")
    y = np.array([2, 3, 4, 5])
    for x in (np.array([2, 3, 1, 1]), np.array([2.5, 1, 1, 1])):
        assert isinstance(t.verify(x, y), bool)


@pytest.mark.parametrize("x", [np.array([2, 3, 1]), np.array([[2, 3, 1, 1]]), "abc", None], ids=str)
def test_A66_toy_verify_on_malformed_input_is_false(x):
    """B15 (fixed): ``verify`` is False and ``solutions`` is an empty [0, 4] array for a malformed input."""
    t = task("toy-perm-4")
    assert t.verify(x, np.array([2, 3, 4, 5])) is False
    assert t.verify(np.array([1, 1, 1, 1]), x) is False  # a malformed answer as well
    sols = t.solutions(x)
    assert isinstance(sols, np.ndarray) and sols.shape == (0, 4)


def test_A71_toy_verify_accepts_integer_valued_floats_like_the_other_tasks():
    t = task("toy-perm-4")
    x = t.encode_input("....")
    assert t.verify(x, np.array([2.0, 3.0, 4.0, 5.0])) is True
    assert len(t.solutions(x.astype(float))) == 24
    q = task("nqueens-6")
    xq = q.encode_input("." * 36)
    assert q.verify(xq, q.solutions(xq)[0].astype(float))  # what the other tasks do today
