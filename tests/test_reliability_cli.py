"""Bad input through the ``gram`` command line (docs/reliability.md, rows C01-C80).

Every row is run in-process through ``gram_cli.main`` (the code ``python -m gram_cli`` runs) and
must give exit code 2, exactly one ``gram: error: ...`` line on stderr that contains the documented message,
no traceback, and leave every file as it was: no new or changed file in the run folders and no ``*.tmp`` file
anywhere.  Rows with ``sub=True`` are also run as a real ``python -m gram_cli`` subprocess (one per command,
importing torch costs ~2-3 s each).  Rows that name a bug pin its fix (docs/reliability.md, "Bugs found and
fixed"); a row with ``xfail=`` would be a strict xfail for a bug that is still open (none today).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
import torch

from gram_pyro import checkpoint
from gram_cli import api, main
from gram_pyro.model import GRAM
from gram_pyro.runconfig import build_run_config
from gram_tasks.graph_coloring import GraphColoringTask
from gram_tasks.sudoku import SudokuTask
from tests.helpers import tiny_toy_run

# The tiny trained run of the brief; eval_inputs/eval_width only make its final evaluation cheap.
TINY = ["train.batches=2", "train.eval_every=0", "train.eval_inputs=4", "train.eval_width=2"]
TINY_SETS = [arg for s in TINY for arg in ("--set", s)]
TRAIN = ["train", "--task", "toy-perm-4", "--preset", "cpu-tiny", "--quiet", "--set", "train.batches=1",
         "--set", "train.eval_inputs=2", "--set", "train.eval_width=1"]
ERROR_LINE = re.compile(r"^gram( [a-z]+)?: error: ")
PROGRESS_LINE = re.compile(r"^(building|built) ")  # load_splits' progress lines ("gram data"), not errors

UNIQUE_4 = [".....43..1..2.4.", ".....21....34...", "3.....4...1.2..."]  # unique-solution 4x4 puzzles
UNSOLVABLE_4 = ".....123....4..."  # no direct conflict, but r2c1 needs a 4 that column 1 already has


def untrained_run(name: str, path: Path, task, sets: tuple[str, ...] = ()) -> Path:
    """A run folder (config.json + checkpoint.pt with untrained weights) and a small cached split for
    ``task``: enough for ``gram solve`` without training (only the toy run needs training)."""
    config = build_run_config(name, api.task_sizes(task), "cpu-tiny", ["train.eval_every=0", *sets])
    path.mkdir(parents=True)
    checkpoint.atomic_write_text(path / "config.json", json.dumps(config.to_dict(), indent=2))
    torch.manual_seed(0)
    gram = GRAM(config.model)
    checkpoint.save(path / "checkpoint.pt", {"identity": config.identity_hash(), "config": config.to_dict(),
                                             "model": gram.state_dict(), "ema": None})
    api._write_splits(api.cache_dir() / f"{name}-seed{config.train.seed}.npz", task.build(0))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability_cli")
    with tiny_toy_run(root, TINY) as toy:
        untrained_run("graph-coloring-6", root / "gc6", GraphColoringTask(6, 12, 4))
        untrained_run("sudoku-4", root / "sd4", SudokuTask(4, n_train=4, n_test=2))
        yield SimpleNamespace(root=root, cache=root / "cache", toy=toy, gc=root / "gc6", sd=root / "sd4")


# ------------------------------------------------------------------ running the CLI
@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_inprocess(argv: list[str]) -> Result:
    """``main(argv)`` with stdout/stderr captured; an escaping exception is rendered as the interpreter
    would (a traceback, exit code 1) so that the assertions below read the same for both runners."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001 - a bug: what `python -m gram_cli` would print
            traceback.print_exc(file=err)
            rc = 1
    return Result(rc, out.getvalue(), err.getvalue())


def run_subprocess(argv: list[str], extra_env: dict[str, str]) -> Result:
    res = subprocess.run([sys.executable, "-m", "gram_cli", *argv], capture_output=True, text=True,
                         env={**os.environ, **extra_env}, timeout=300)
    return Result(res.returncode, res.stdout, res.stderr)


def snapshot(*dirs: Path) -> dict[str, str]:
    """Content hash of every file under ``dirs`` (the dataset cache excluded: it may gain complete entries)."""
    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and "cache" not in p.relative_to(d).parts:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def temp_files(*dirs: Path) -> list[str]:
    return [str(p) for d in dirs for p in d.rglob("*.tmp")]


def check_one_line_error(res: Result, message: str) -> None:
    assert "Traceback" not in res.err, res.err
    assert res.rc == 2, (res.rc, res.err)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines and ERROR_LINE.match(lines[-1]), res.err
    assert all(PROGRESS_LINE.match(line) for line in lines[:-1]), f"more than one error line: {res.err!r}"
    assert message in lines[-1], (message, lines[-1])


# ------------------------------------------------------------------ set-ups of the rows
def copy_run(env, tmp: Path) -> dict:
    shutil.copytree(env.toy, tmp / "run")
    return {"run": tmp / "run"}


def damage_checkpoint(kind: str) -> Callable:
    def setup(env, tmp: Path) -> dict:
        run = copy_run(env, tmp)["run"]
        ckpt = run / "checkpoint.pt"
        if kind == "missing":
            ckpt.unlink()
        elif kind == "truncated":
            ckpt.write_bytes(ckpt.read_bytes()[:4096])
        elif kind == "empty":
            ckpt.write_bytes(b"")
        elif kind == "text":
            ckpt.write_text("hello\n")
        elif kind == "foreign":
            torch.save([1, 2, 3], ckpt)
        elif kind == "format":
            state = torch.load(ckpt, weights_only=True)
            torch.save({**state, "format": 99}, ckpt)
        elif kind == "other_run":  # the checkpoint of another task and model
            shutil.copy(env.gc / "checkpoint.pt", ckpt)
        elif kind == "weights":  # right format and identity, weights of another layout (another code version)
            state = torch.load(ckpt, weights_only=True)
            model = dict(state["model"])
            model.pop(next(iter(model)))
            torch.save({**state, "model": model, "ema": None}, ckpt)
        elif kind == "evil":
            with open(ckpt, "wb") as f:
                pickle.dump({"format": 1, "payload": Evil(tmp / "PWNED")}, f)
        else:
            raise AssertionError(kind)
        return {"run": run}

    return setup


class Evil:
    """Unpickling this would create a marker file: a checkpoint must never run it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def bad_config_json(env, tmp: Path) -> dict:
    run = copy_run(env, tmp)["run"]
    (run / "config.json").write_text('{"task": "toy-perm-4", ')
    return {"run": run}


def write_file(name: str, content: str | bytes) -> Callable:
    def setup(env, tmp: Path) -> dict:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return {"file": path}

    return setup


def existing_file(env, tmp: Path) -> dict:
    (tmp / "afile").write_text("not a folder\n")
    return {"file": tmp / "afile"}


# ------------------------------------------------------------------ the rows
@dataclass
class Row:
    id: str
    argv: list[str]  # "{toy}", "{gc}", "{sd}", "{run}", "{file}", "{tmp}" are filled in
    message: str  # a substring of the one error line ({run}, {file}, {tmp} filled in)
    setup: Callable | None = None
    bug: str | None = None  # the fixed bug or observation this row pins (docs/reliability.md)
    xfail: str | None = None  # a bug that is still open: strict xfail with this reason
    sub: bool = False  # also run as a `python -m gram_cli` subprocess
    marks: list = field(default_factory=list)


T = TRAIN + ["--out", "{tmp}/new"]
ROWS = [
    # --- train: task, preset and configuration
    Row("C01", ["train", "--task", "nope", "--out", "{tmp}/new"],
        "unknown task 'nope'; known tasks: arc, arc-1, arc-2, digits, "),
    Row("C02", T + ["--preset", "nope"],
        "unknown preset 'nope'; known: cpu, cpu-arc, cpu-graph, cpu-tiny, paper, paper-arc, paper-sudoku"),
    Row("C03", T + ["--set", "model.bogus=1"], "unknown config key model.bogus", sub=True),
    Row("C04", T + ["--set", "model.D=big"], "config key model.D expects int, got 'big'"),
    Row("C05", T + ["--set", "train.augment=perhaps"], "config key train.augment expects bool, got 'perhaps'"),
    Row("C06", T + ["--set", "D=3"],
        "override 'D=3' must look like section.key=value (sections: model, optim, train)"),
    Row("C07", T + ["--set", "foo.D=3"], "unknown config section 'foo' in 'foo.D=3'; use model, optim or train"),
    Row("C08", T + ["--set", "model.K=-2"], "model: K must be >= 1, got -2"),
    Row("C09", T + ["--set", "model.N_sup=0"], "model: N_sup must be >= 1, got 0"),
    Row("C10", T + ["--set", "model.D=0"], "model: D must be >= 1, got 0"),
    Row("C11", T + ["--set", "train.eval_width=0"], "config key train.eval_width must be >= 1, got 0"),
    Row("C12", T + ["--set", "model.seq_len=9"], "unknown config key model.seq_len"),
    Row("C13", T + ["--set", "model.mode=bogus"],
        "model: unknown mode 'bogus'; choose from gram, deterministic, stochastic_only, guide_only, flat"),
    Row("C14", T + ["--set", "model.prior=bogus"],
        "unknown prior 'bogus'; registered: gaussian, laplace, lowrank, sigma_schedule, student_t"),
    Row("C15", T + ["--preset", "{file}"], "cannot parse preset {file}: ",
        setup=write_file("broken.yaml", "model: {D: 32\n")),
    Row("C16", T + ["--preset", "{file}"], "preset {file}: top-level keys must be among model, optim, train",
        setup=write_file("extra.yaml", "model: {D: 32}\nfoo: {bar: 1}\n")),
    Row("C17", T + ["--preset", "{tmp}/missing.yaml"], "preset file not found: {tmp}/missing.yaml"),
    Row("C18", T + ["--preset", "{file}"], "preset {file}: section 'model' must be a mapping of keys to values",
        setup=write_file("list.yaml", "model: [1, 2]\n"), bug="B1"),
    Row("C19", T + ["--set", "optim.betas=0.9"], "optim: betas must be two numbers in [0, 1), got (0.9,)", bug="B2"),
    Row("C20", T + ["--set", "model.beta=nan"], "model: beta must be a finite number >= 0, got nan", bug="B3"),
    Row("C21", T + ["--set", "train.seed=-1"], "config key train.seed must be >= 0, got -1", bug="B4"),
    Row("C75", T + ["--set", "model.n_heads=0"], "model: n_heads must be >= 1, got 0", bug="B20"),
    Row("C76", T + ["--set", "model.prior_args=0"], "config key model.prior_args expects name=value pairs, got '0'",
        bug="B17"),
    Row("C22", T + ["--device", "cuda"], "train.device=cuda but no CUDA device is available",
        marks=[pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")]),
    # --- train: run folders, resume
    Row("C23", TRAIN + ["--out", "{tmp}/empty", "--resume"], "nothing to resume in {tmp}/empty (no config.json)"),
    Row("C24", TRAIN + ["--out", "{run}"],
        "{run} already holds a run; pass --resume to continue it or choose --out", setup=copy_run),
    Row("C25", TRAIN + ["--out", "{run}", "--resume", "--set", "model.D=64"],
        "{run} was trained with a different task or model configuration", setup=copy_run),
    Row("C26", ["train", "--task", "toy-perm-5", "--preset", "cpu-tiny", "--quiet", "--out", "{run}", "--resume"],
        "{run} was trained with a different task or model configuration", setup=copy_run),
    Row("C27", ["train", "--task", "toy-perm-4", "--preset", "cpu-tiny", "--quiet", *TINY_SETS, "--out", "{run}",
                 "--resume"], "no checkpoint at {run}/checkpoint.pt", setup=damage_checkpoint("missing")),
    Row("C28", TRAIN + ["--out", "{file}"], "--out {file} exists and is not a folder", setup=existing_file),
    # a failed --resume with other train settings: config.json is not rewritten (the snapshot check)
    Row("C77", TRAIN + ["--out", "{run}", "--resume"], "no checkpoint at {run}/checkpoint.pt",
        setup=damage_checkpoint("missing"), bug="O2"),
    # --- eval: arguments
    Row("C29", ["eval", "{toy}", "--json", "--width", "0"], "widths must be integers >= 1, got [0]"),
    Row("C30", ["eval", "{toy}", "--json", "--depth", "-1"], "depths must be integers >= 1, got [-1]"),
    Row("C31", ["eval", "{toy}", "--json", "--width", ","],
        "gram: error: argument --width: expected at least one integer, got ',' (see gram eval --help)", bug="B5"),
    Row("C32", ["eval", "{toy}", "--json", "--split", "nope"], "unknown split 'nope'; this run has train, test",
        bug="B6"),
    Row("C33", ["eval", "{toy}", "--json", "--width", "a"],
        "gram: error: argument --width: expected comma-separated integers, got 'a' (see gram eval --help)",
        bug="B7", sub=True),
    Row("C34", ["eval", "{toy}", "--json", "--max-inputs", "0"], "max_inputs must be >= 1, got 0", bug="B8"),
    Row("C78", ["eval", "{toy}", "--json", "--max-inputs", "-1"], "max_inputs must be >= 1, got -1", bug="O6"),
    Row("C79", ["eval", "{toy}", "--json", "--temperature", "-1"],
        "gram: error: argument --temperature: expected a finite number >= 0, got '-1' (see gram eval --help)"),
    Row("C80", ["solve", "{toy}", "12..", "--temperature", "nan"],
        "gram: error: argument --temperature: expected a finite number >= 0, got 'nan' (see gram solve --help)"),
    # --- eval: run folders and checkpoints
    Row("C35", ["eval", "{tmp}/missing"], "{tmp}/missing is not a run folder (no config.json)"),
    Row("C36", ["eval", "{run}"], "no checkpoint at {run}/checkpoint.pt", setup=damage_checkpoint("missing")),
    Row("C37", ["eval", "{run}"], "{run}/checkpoint.pt is not a readable gram_pyro checkpoint (truncated or "
        "foreign): File is not a zip file", setup=damage_checkpoint("truncated"), sub=True),
    Row("C38", ["eval", "{run}"], "{run}/checkpoint.pt is not a readable gram_pyro checkpoint (truncated or "
        "foreign): File is not a zip file", setup=damage_checkpoint("empty")),
    Row("C39", ["eval", "{run}"], "{run}/checkpoint.pt is not a gram_pyro checkpoint (no format field)",
        setup=damage_checkpoint("foreign")),
    Row("C40", ["eval", "{run}"], "{run}/checkpoint.pt has checkpoint format 99, this version reads 1",
        setup=damage_checkpoint("format")),
    Row("C41", ["eval", "{run}"], "{run}/checkpoint.pt was written for a different task or model configuration "
        "(identity ", setup=damage_checkpoint("other_run")),
    Row("C42", ["eval", "{run}"], "{run}/checkpoint.pt is not a readable gram_pyro checkpoint (truncated or "
        "foreign): File is not a zip file", setup=damage_checkpoint("evil"),
        marks=[pytest.mark.filterwarnings("ignore:Detected pickle protocol")]),
    Row("C43", ["eval", "{run}"], "{run}/config.json is not valid JSON: ", setup=bad_config_json),
    Row("C44", ["eval", "{run}"], "{run}/checkpoint.pt is not a readable gram_pyro checkpoint (truncated or "
        "foreign): File is not a zip file", setup=damage_checkpoint("text"), bug="B9"),
    Row("C45", ["eval", "{run}"], "{run}/checkpoint.pt: the weights do not fit this model (",
        setup=damage_checkpoint("weights"), bug="B10"),
    # --- solve: user inputs
    Row("C46", ["solve", "{toy}", "12x."], "toy-perm-4: cell 3: bad character 'x' (use 1-4 or '.')"),
    Row("C47", ["solve", "{toy}", "123"], "toy-perm-4: expected 4 characters, got 3"),
    Row("C48", ["solve", "{toy}", ""], "toy-perm-4: expected 4 characters, got 0"),
    Row("C49", ["solve", "{toy}", "11.."], "toy-perm-4: a digit is given twice"),
    Row("C50", ["solve", "{toy}", "12..", "--width", "0"], "num_samples (width) must be >= 1, got 0"),
    Row("C51", ["solve", "{toy}", "12..", "--depth", "0"], "depth must be >= 1, got 0"),
    Row("C52", ["solve", "{sd}", "11.............."],
        "puzzle: contradictory givens: digit 1 at r1c2 repeats in row 1 (also at r1c1)", sub=True),
    Row("C53", ["solve", "{sd}", UNSOLVABLE_4],
        "puzzle: the givens do not contradict each other directly, but it has no solution"),
    Row("C54", ["solve", "{sd}", "1234"], "puzzle: expected 16 cells, got 4 characters"),
    Row("C55", ["solve", "{gc}", "{file}"], "{file} line 2: vertex 9 out of range 1..3",
        setup=write_file("broken.col", "p edge 3 1\ne 1 9\n")),
    Row("C56", ["solve", "{gc}", "{file}"], "graph with 4 vertices and 6 edges is not 3-colourable",
        setup=write_file("k4.col", "c K4\np edge 4 6\ne 1 2\ne 1 3\ne 1 4\ne 2 3\ne 2 4\ne 3 4\n")),
    Row("C57", ["solve", "{gc}", "{file}"], "{file} line 1: graph has 7 vertices, at most 6 allowed",
        setup=write_file("big.col", "p edge 7 0\n")),
    Row("C58", ["solve", "{gc}", "{file}"], "{file}: empty file", setup=write_file("empty.col", "")),
    Row("C59", ["solve", "{gc}", "{tmp}/missing.col"], "cannot read DIMACS file '{tmp}/missing.col': "
        "FileNotFoundError"),
    Row("C60", ["solve", "{toy}", "{file}"], "{file}: not a UTF-8 text file",
        setup=write_file("binary.txt", b"\xff\xfe12"), bug="O7"),
    # --- generate
    Row("C61", ["generate", "{toy}", "--num", "0"], "num_samples (width) must be >= 1, got 0"),
    # --- data: user puzzle files
    Row("C62", ["data", "sudoku-4", "--data", "{file}"], "{file}: no puzzles found (empty file or only comments)",
        setup=write_file("empty.txt", "# nothing\n\n"), sub=True),
    Row("C63", ["data", "sudoku-4", "--data", "{tmp}/missing.txt"], "data file not found: {tmp}/missing.txt"),
    Row("C64", ["data", "toy-perm-4", "--data", "{file}"], "task toy-perm-4 does not read data files",
        setup=write_file("p.txt", UNIQUE_4[0] + "\n")),
    Row("C65", ["data", "sudoku-4", "--data", "{file}"],
        "{file}: line 2: contradictory givens: digit 3 at r1c2 repeats in row 1 (also at r1c1)",
        setup=write_file("conflict.txt", UNIQUE_4[0] + "\n33..............\n")),
    Row("C66", ["data", "sudoku-4", "--data", "{file}"],
        "{file}: line 2: puzzle has no solution; Sudoku splits need unique-solution puzzles",
        setup=write_file("unsolvable.txt", UNIQUE_4[0] + "\n" + UNSOLVABLE_4 + "\n")),
    Row("C67", ["data", "sudoku-4", "--data", "{file}"],
        "{file}: line 1: puzzle has more than one solution; Sudoku splits need unique-solution puzzles",
        setup=write_file("multi.txt", "." * 16 + "\n")),
    Row("C68", ["data", "sudoku-4", "--data", "{file}"],
        "{file}: 3 distinct puzzles leave none for a test split with n_train=1000",
        setup=write_file("few.txt", "\n".join(UNIQUE_4) + "\n")),
    Row("C69", ["data", "sudoku-4", "--data", "{file}"],
        "{file}: line 2: field 'answer': answer is incomplete (cell r1c1 is blank)",
        setup=write_file("bad.csv", f"source,question,answer,rating\nx,{UNIQUE_4[0]},{UNIQUE_4[0]},0\n")),
    Row("C70", ["data", "sudoku-4", "--data", "{file}"], "{file}: not a text file (byte 0 is not UTF-8)",
        setup=write_file("binary.txt", b"\xff\xfe\x00\x01")),
    Row("C71", ["data", "nqueens-6", "--seed", "-1"],
        "gram: error: argument --seed: expected non-negative integer, got -1 (see gram data --help)", bug="B4"),
]
ROW_IDS = [r.id for r in ROWS]
assert len(set(ROW_IDS)) == len(ROW_IDS)


def params(rows):
    out = []
    for r in rows:
        marks = list(r.marks)
        if r.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=r.xfail))
        out.append(pytest.param(r, id=r.id, marks=marks))
    return out


def prepare(row: Row, env, tmp: Path) -> tuple[list[str], str, dict[str, str]]:
    values = {"toy": env.toy, "gc": env.gc, "sd": env.sd, "tmp": tmp, "run": tmp / "run", "file": tmp / "file"}
    extra = row.setup(env, tmp) if row.setup else {}
    values.update(extra)
    fill = lambda s: s.format(**{k: str(v) for k, v in values.items()})  # noqa: E731
    return [fill(a) for a in row.argv], fill(row.message), {"GRAM_CACHE": str(env.cache)}


def check_row(row: Row, env, tmp: Path, runner) -> None:
    argv, message, extra_env = prepare(row, env, tmp)
    before = snapshot(env.root, tmp)
    res = runner(argv, extra_env)
    check_one_line_error(res, message)
    assert snapshot(env.root, tmp) == before, "a file was written or changed"
    assert not temp_files(env.root, tmp), "a temporary file was left behind"
    assert not (tmp / "PWNED").exists()


@pytest.mark.parametrize("row", params(ROWS))
def test_cli_row(row, env, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CACHE", str(env.cache))
    check_row(row, env, tmp_path, lambda argv, extra_env: run_inprocess(argv))


@pytest.mark.parametrize("row", params([r for r in ROWS if r.sub]))
def test_cli_row_subprocess(row, env, tmp_path):
    check_row(row, env, tmp_path, run_subprocess)


# ------------------------------------------------------------------ the dataset cache
def _cache_with(env, tmp: Path, damage: Callable[[bytes], bytes]) -> Path:
    cache = tmp / "cache"
    cache.mkdir()
    good = (env.cache / "toy-perm-4-seed0.npz").read_bytes()
    (cache / "toy-perm-4-seed0.npz").write_bytes(damage(good))
    return cache


def test_C72_garbage_dataset_cache_is_rebuilt(env, tmp_path, monkeypatch):
    cache = _cache_with(env, tmp_path, lambda good: b"garbage")
    monkeypatch.setenv("GRAM_CACHE", str(cache))
    res = run_inprocess(["eval", str(env.toy), "--json", "--width", "1", "--max-inputs", "2"])
    assert res.rc == 0 and "Traceback" not in res.err, res.err
    assert (cache / "toy-perm-4-seed0.npz").read_bytes() == (env.cache / "toy-perm-4-seed0.npz").read_bytes()


def test_C73_truncated_dataset_cache_is_rebuilt(env, tmp_path, monkeypatch):
    """B12 (fixed): a truncated cache entry is rebuilt like a garbage one (C72)."""
    cache = _cache_with(env, tmp_path, lambda good: good[: len(good) // 2])
    monkeypatch.setenv("GRAM_CACHE", str(cache))
    res = run_inprocess(["eval", str(env.toy), "--json", "--width", "1", "--max-inputs", "2"])
    assert res.rc == 0 and "Traceback" not in res.err, res.err
    assert not temp_files(cache)
    assert (cache / "toy-perm-4-seed0.npz").read_bytes() == (env.cache / "toy-perm-4-seed0.npz").read_bytes()


def test_C74_the_same_generate_command_gives_the_same_samples(env, tmp_path, monkeypatch):
    """B19 (fixed): eval, solve and generate seed their sampling with ``--seed`` (default 0), so the same command
    prints the same numbers whatever state the process's RNG starts in."""
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    run = untrained_run("toy-perm-4", tmp_path / "wide", tasks_toy(), ("model.sigma_init=0.9", "model.sigma_max=1.0"))
    commands = {
        "generate": ["generate", str(run), "--num", "16", "--json", "--out", "{out}"],
        "generate-seed": ["generate", str(run), "--num", "16", "--json", "--seed", "5", "--out", "{out}"],
        "eval": ["eval", str(run), "--json", "--width", "4", "--max-inputs", "4"],
        "solve": ["solve", str(run), "1...", "--width", "8", "--json"],
    }
    for name, argv in commands.items():
        outputs = []
        for process_seed in (1, 2):  # what two fresh processes start from (torch seeds itself randomly)
            torch.manual_seed(process_seed)
            out = tmp_path / f"{name}{process_seed}.jsonl"
            res = run_inprocess([a.format(out=out) for a in argv])
            assert res.rc == 0, res.err
            outputs.append(out.read_text() if "--out" in argv else res.out)
        assert outputs[0] == outputs[1], name
    assert (tmp_path / "generate1.jsonl").read_text() != (tmp_path / "generate-seed1.jsonl").read_text()


def tasks_toy():
    from gram_tasks.toy import PermutationTask

    return PermutationTask(4)


def test_rows_match_the_table():
    """Every row id of this file appears in docs/reliability.md, and the table has at least 30 rows."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    ids = set(re.findall(r"^\| ([CAFX]\d\d) \|", doc, flags=re.M))
    assert len(ids) >= 30
    assert set(ROW_IDS) | {"C72", "C73", "C74"} <= ids
    from tests import test_reliability_api

    assert {r.id for r in test_reliability_api.ROWS} | {"A63", "A64", "A65", "A66", "A71"} <= ids
