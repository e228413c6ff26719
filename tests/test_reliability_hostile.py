"""Hostile input, second round (issue 14; docs/reliability.md, rows H01-H99).

Output targets that are devices, FIFOs, sockets, folders or links; run folders that are someone else's, locked
or resumed with other data; inputs that are too large, endless or not regular files; configuration, preset,
``config.json`` and checkpoint contents that are wrong-typed, too deep, alias bombs, too large or not finite;
lax numbers.  Every row runs through ``gram_cli.main`` like tests/test_reliability_cli.py (its runner and
checks are reused) and must give exit code 2, one ``gram: error:`` line, no traceback and no file changed.  On
top of the content hash, every path in the test folder keeps its kind (a device node stays a device node, a
link stays a link to the same place).  Links, FIFOs, sockets and device nodes are made only inside the test's
own folder; no test touches the system's ``/dev``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gram_pyro import checkpoint, files
from gram_cli import runfolder
from tests.test_reliability_cli import (TINY_SETS, TRAIN, Row, check_one_line_error, copy_run, env, prepare,  # noqa: F401
                                        run_inprocess, snapshot, temp_files)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mknod of a character device needs root")
T = TRAIN + ["--out", "{tmp}/new"]
RESUME = ["train", "--task", "toy-perm-4", "--preset", "cpu-tiny", "--quiet", *TINY_SETS, "--out", "{run}", "--resume"]
GOOD_COL = "p edge 3 2\ne 1 2\ne 2 3\n"


# ------------------------------------------------------------------ special files, made in the test folder only
def device(path: Path, minor: int = 7) -> Path:
    """A character device node (1, minor) at ``path``: 3 is like /dev/null, 5 /dev/zero, 7 /dev/full."""
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, minor))
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def kinds(folder: Path) -> dict[str, tuple]:
    """Every path's kind (lstat file type) and, for a link, its target: "no file changed" for special files."""
    out = {}
    for p in sorted(folder.rglob("*")):
        mode = os.lstat(p).st_mode
        out[str(p)] = (stat.S_IFMT(mode), os.readlink(p) if stat.S_ISLNK(mode) else None)
    return out


def in_tmp(make) -> callable:
    """A row set-up that makes a special file ``tmp/file`` (by ``make(path, tmp)``); returns {"file": path}."""
    def setup(env, tmp: Path) -> dict:
        return {"file": make(tmp / "file", tmp)}

    return setup


def text(name: str, content: str | bytes):
    return in_tmp(lambda p, tmp: _write(tmp / name, content))


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def nested(depth: int) -> str:
    return "model: " + "[" * depth + "]" * depth + "\n"


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "model: {D: 32}\n"


# ------------------------------------------------------------------ run-folder set-ups
def run_with(change) -> callable:
    """A copy of the tiny toy run, then ``change(run, tmp)``."""
    def setup(env, tmp: Path) -> dict:
        run = copy_run(env, tmp)["run"]
        change(run, tmp)
        return {"run": run}

    return setup


def edit_config(**sections):
    def change(run: Path, tmp: Path) -> None:
        cfg = json.loads((run / "config.json").read_text())
        for section, values in sections.items():
            cfg[section].update(values)
        (run / "config.json").write_text(json.dumps(cfg))

    return change


def poison_weights(part: str, value: float):
    def change(run: Path, tmp: Path) -> None:
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        name = next(k for k, v in state[part].items() if v.is_floating_point() and v.numel())
        state[part] = {**state[part], name: torch.full_like(state[part][name], value)}
        torch.save(state, run / "checkpoint.pt")

    return change


def users_folder(*names: str):
    def setup(env, tmp: Path) -> dict:
        (tmp / "mine").mkdir()
        for name in names:
            (tmp / "mine" / name).write_text('{"my": "own file"}\n')
        return {"run": tmp / "mine"}

    return setup


def own_run_file(name: str, make):
    def setup(env, tmp: Path) -> dict:
        (tmp / "new").mkdir()
        make(tmp / "new" / name, tmp)
        return {"run": tmp / "new"}

    return setup


def locked(env, tmp: Path) -> dict:
    run = copy_run(env, tmp)["run"]
    fd = os.open(run / files.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another "process" holds the run (flock: per open file description)
    _HELD.append(fd)
    return {"run": run}


_HELD: list[int] = []


def marker(data: str | None, raw: str | None = None):
    def change(run: Path, tmp: Path) -> None:
        body = raw if raw is not None else json.dumps({"format": 1, "task": "toy-perm-4", "seed": 0, "data": data})
        (run / runfolder.MARKER).write_text(body)

    return change


def sock(path: Path, tmp: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    _SOCKETS.append(s)
    return path


_SOCKETS: list[socket.socket] = []


def report_figures_is_a_file(env, tmp: Path) -> dict:
    _write(tmp / "r_figures", "mine\n")
    return {"file": tmp / "r.html"}


# ------------------------------------------------------------------ the rows
GEN = ["generate", "{toy}", "--num", "2", "--out"]
DEV = [needs_root]
ROWS = [
    # --- output targets (gram_pyro.files.output_target)
    Row("H01", GEN + ["{file}"], "cannot write {file}: it is a character device; gram writes only regular files",
        setup=in_tmp(lambda p, t: device(p, 7)), marks=DEV),
    Row("H02", GEN + ["{file}"], "cannot write {file}: it is a character device", setup=in_tmp(lambda p, t: device(p, 3)),
        marks=DEV),
    Row("H03", GEN + ["{file}"], "cannot write {file}: it is a FIFO", setup=in_tmp(lambda p, t: fifo(p))),
    Row("H04", GEN + ["{tmp}"], "cannot write {tmp}: it is a directory"),
    Row("H05", GEN + ["{file}"], "cannot write {tmp}/dev (via the symlink {file}): it is a character device",
        setup=in_tmp(lambda p, t: link(p, device(t / "dev", 7))), marks=DEV),
    Row("H06", GEN + ["{file}"], "cannot write {tmp}/pipe (via the symlink {file}): it is a FIFO",
        setup=in_tmp(lambda p, t: link(p, fifo(t / "pipe")))),
    Row("H07", GEN + ["{file}/x.jsonl"], "cannot write {file}/x.jsonl: {file} is not a folder",
        setup=text("afile", "mine\n")),
    Row("H08", GEN + ["{file}"], "cannot write {file}: it is a socket", setup=in_tmp(sock)),
    Row("H09", GEN + ["{file}"], "Too many levels of symbolic links",
        setup=in_tmp(lambda p, t: link(p, link(t / "loop", p)))),
    Row("H10", ["report", "{toy}", "--out", "{tmp}"], "cannot write {tmp}: it is a directory"),
    Row("H11", ["report", "{toy}", "--out", "{file}"], "cannot write {file}: it is a character device",
        setup=in_tmp(lambda p, t: device(p, 7)), marks=DEV),
    Row("H12", ["report", "{toy}", "--out", "{file}"], "cannot write {file}: it is a FIFO",
        setup=in_tmp(lambda p, t: fifo(p))),
    Row("H13", ["report", "{toy}", "--out", "{file}"], "cannot write into {tmp}/r_figures: it is a regular file, "
        "not a folder", setup=report_figures_is_a_file),
    # --- run folders (gram_cli.runfolder)
    Row("H20", TRAIN + ["--out", "{run}"], "{run} holds config.json, history.jsonl that gram did not write",
        setup=users_folder("config.json", "history.jsonl")),
    Row("H21", TRAIN + ["--out", "{run}"], "{run} holds history.jsonl that gram did not write",
        setup=users_folder("history.jsonl", "notes.txt")),
    Row("H22", TRAIN + ["--out", "{run}"], "cannot write {run}/config.json: it is a directory",
        setup=own_run_file("config.json", lambda p, t: p.mkdir())),
    Row("H23", TRAIN + ["--out", "{run}"], "cannot write {run}/history.jsonl: it is a FIFO",
        setup=own_run_file("history.jsonl", lambda p, t: fifo(p))),
    Row("H24", TRAIN + ["--out", "{run}"], "(via the symlink {run}/checkpoint.pt): it is a character device",
        setup=own_run_file("checkpoint.pt", lambda p, t: link(p, device(t / "dev", 3))), marks=DEV),
    Row("H25", RESUME + ["--set", "train.batches=3"], "{run} is in use by another gram process", setup=locked),
    Row("H26", RESUME + ["--set", "train.seed=1"], "--resume cannot change train.seed (0 -> 1): it defines the run's "
        "data split", setup=copy_run),
    Row("H27", RESUME, "--resume must read the same --data file as the run (digest 0123456789ab, got None)",
        setup=run_with(marker("0123456789ab"))),
    Row("H28", RESUME + ["--set", "train.batches=3"], "{run}/checkpoint.pt: model weight ",
        setup=run_with(poison_weights("model", float("nan")))),
    Row("H29", RESUME + ["--set", "train.batches=3"], "{run}/checkpoint.pt is not a readable gram_pyro checkpoint",
        setup=run_with(lambda r, t: (r / "checkpoint.pt").write_bytes((r / "checkpoint.pt").read_bytes()[:999]))),
    Row("H30", RESUME, "{run}/config.json: config key train.seed expects int, got 'abc'",
        setup=run_with(edit_config(train={"seed": "abc"}))),
    Row("H31", T + ["--set", "train.eval_width=1000000"], "config key train.eval_width must be <= 65536, got 1000000"),
    Row("H32", T + ["--set", "train.eval_width=65536", "--set", "train.eval_inputs=100000"],
        "more than the budget of 268435456"),
    Row("H33", TRAIN + ["--out", "{file}"], "--out {file} exists and is not a folder", setup=in_tmp(lambda p, t: fifo(p))),
    Row("H34", RESUME, "{run}/.gram-run.json is not valid JSON (a damaged run marker)",
        setup=run_with(marker(None, raw="{not json"))),
    Row("H35", RESUME + ["--set", "train.batches=3"], "{run}/checkpoint.pt: ema weight ",
        setup=run_with(poison_weights("ema", float("inf")))),
    # --- configuration values (gram_pyro.validation, runconfig._coerce)
    Row("H40", T + ["--set", "model.prior_args=df=3"],
        "config key model.prior_args: prior 'gaussian' takes no arguments, got 'df'"),
    Row("H41", T + ["--set", "model.prior=student_t", "--set", "model.prior_args=df=3,scale=2"],
        "config key model.prior_args: prior 'student_t' takes df, got 'scale'"),
    Row("H42", T + ["--set", "model.prior=student_t", "--set", "model.prior_args=df=abc"],
        "config key model.prior_args: df must be a number, got 'abc'"),
    Row("H43", T + ["--set", "model.D=100000"], "config key model.D must be <= 8192, got 100000"),
    Row("H44", T + ["--set", "model.K=1000"], "config key model.K must be <= 64, got 1000"),
    Row("H45", T + ["--set", "model.n_prefix=100000"], "config key model.n_prefix must be <= 1024, got 100000"),
    Row("H46", T + ["--set", "model.T=100000"], "config key model.T must be <= 64, got 100000"),
    Row("H47", T + ["--set", "model.N_sup=100000"], "config key model.N_sup must be <= 256, got 100000"),
    Row("H48", T + ["--set", "optim.batch_size=10000000"], "config key optim.batch_size must be <= 65536, got 10000000"),
    Row("H49", T + ["--set", "model.D=1_000"], "config key model.D expects int, got '1_000'"),
    Row("H50", T + ["--set", "model.D=\uff16\uff14"], "config key model.D expects int, got '\uff16\uff14'"),
    Row("H51", T + ["--set", "train.seed=4294967296"], "config key train.seed must be <= 4294967295, got 4294967296"),
    Row("H52", T + ["--set", "train.batches=1000000000000"], "config key train.batches must be <= 1000000000"),
    Row("H53", T + ["--set", "model.D=8192", "--set", "model.D_h=32768", "--set", "model.n_heads=8"],
        "parameters, more than the budget of 268435456"),
    Row("H54", T + ["--set", "model.beta=1_0"], "config key model.beta expects float, got '1_0'"),
    Row("H55", T + ["--set", "model.D=+64"], "config key model.D expects int, got '+64'"),
    # --- preset files (validation.load_structured)
    Row("H60", T + ["--preset", "{file}"], "preset {file}: section 'model' has a key that is not a name: 1",
        setup=text("keys.yaml", "model: {1: 2}\n")),
    Row("H61", T + ["--preset", "{file}"], "config key model.preset expects a preset name, got 5",
        setup=text("num.yaml", "model: {preset: 5}\n")),
    Row("H62", T + ["--preset", "{file}"], "cannot parse preset {file}: nested deeper than 32 levels",
        setup=text("deep.yaml", nested(5000))),
    Row("H63", T + ["--preset", "{file}"], "cannot parse preset {file}: nested deeper than 32 levels",
        setup=text("deep.json", '{"model": ' + "[" * 100000 + "]" * 100000 + "}")),
    Row("H64", T + ["--preset", "{file}"], "anchors and aliases (&, *) are not allowed in gram preset files",
        setup=text("bomb.yaml", ALIAS_BOMB)),
    Row("H65", T + ["--preset", "{file}"], "{file} is larger than the 1 MiB limit for preset files",
        setup=text("big.yaml", "# " + "x" * (1 << 20) + "\n")),
    Row("H66", T + ["--preset", "{file}"], "cannot read {file}: it is a character device, not a regular file",
        setup=in_tmp(lambda p, t: link(t / "zero.yaml", device(t / "zero", 5))) , marks=DEV),
    Row("H67", T + ["--preset", "{file}"], "cannot read {file}: it is a FIFO, not a regular file",
        setup=in_tmp(lambda p, t: fifo(t / "pipe.yaml"))),
    Row("H68", T + ["--preset", "{file}"], "preset {file}: not a UTF-8 text file", setup=text("bin.yaml", b"\xff\xfe")),
    Row("H69", T + ["--preset", "{file}"], "preset {file}: top-level keys must be among model, optim, train",
        setup=text("list.yaml", "- model\n- train\n")),
    Row("H70", T + ["--preset", "{file}"], "preset {file}: section 'train' has a key that is not a name: None",
        setup=text("nullkey.yaml", "train: {~: 3}\n")),
    # --- config.json and checkpoint contents (gram eval)
    Row("H71", ["eval", "{run}"], "{run}/config.json: config key train.seed expects int, got 'abc'",
        setup=run_with(edit_config(train={"seed": "abc"}))),
    Row("H72", ["eval", "{run}"], "{run}/config.json: config key model.D expects int, got 64.5",
        setup=run_with(edit_config(model={"D": 64.5}))),
    Row("H73", ["eval", "{run}"], "{run}/config.json is not valid JSON: nested too deeply",
        setup=run_with(lambda r, t: (r / "config.json").write_text("[" * 100000 + "]" * 100000))),
    Row("H74", ["eval", "{run}"], "{run}/config.json is larger than the 1 MiB limit for config files",
        setup=run_with(lambda r, t: (r / "config.json").write_text(" " * (1 << 20) + "{}"))),
    Row("H75", ["eval", "{run}"], "cannot read {run}/config.json: it is a character device, not a regular file",
        setup=run_with(lambda r, t: ((r / "config.json").unlink(), link(r / "config.json", device(t / "z", 5)))),
        marks=DEV),
    Row("H76", ["eval", "{run}"], "{run}/config.json: expected a mapping, got list",
        setup=run_with(lambda r, t: (r / "config.json").write_text("[1, 2]"))),
    Row("H77", ["eval", "{run}"], "{run}/checkpoint.pt: ema weight ", setup=run_with(poison_weights("ema", float("nan")))),
    Row("H78", ["eval", "{run}"], "{run}/checkpoint.pt is a FIFO, not a checkpoint file",
        setup=run_with(lambda r, t: ((r / "checkpoint.pt").unlink(), fifo(r / "checkpoint.pt")))),
    Row("H79", ["eval", "{run}"], "{run}/checkpoint.pt is a character device, not a checkpoint file",
        setup=run_with(lambda r, t: ((r / "checkpoint.pt").unlink(), link(r / "checkpoint.pt", device(t / "z", 5)))),
        marks=DEV),
    Row("H80", ["eval", "{run}"], "config key model.D must be <= 8192, got 100000",
        setup=run_with(edit_config(model={"D": 100000}))),
    Row("H81", ["eval", "{run}"], "{run}/config.json: config key train.augment expects bool, got 1",
        setup=run_with(edit_config(train={"augment": 1}))),
    Row("H82", ["eval", "{run}"], "{run}/config.json: unknown config key model.bogus",
        setup=run_with(edit_config(model={"bogus": 1}))),
    # --- sampling bounds (validation.check_rollout) and strict integer options
    Row("H85", ["eval", "{toy}", "--json", "--depth", "1000000000"], "evaluation: depth must be <= 4096, got 1000000000"),
    Row("H86", ["eval", "{toy}", "--json", "--width", "100000"], "evaluation: width must be <= 65536, got 100000"),
    Row("H87", ["eval", "{toy}", "--json", "--width", "60000", "--depth", "4000"], "more than the budget of 268435456"),
    Row("H88", ["solve", "{toy}", "12..", "--width", "100000"], "sampling: width must be <= 65536, got 100000"),
    Row("H89", ["solve", "{toy}", "12..", "--depth", "5000"], "sampling: depth must be <= 4096, got 5000"),
    Row("H90", ["generate", "{toy}", "--num", "1000000"], "sampling: width must be <= 65536, got 1000000"),
    Row("H91", ["generate", "{toy}", "--num", "\uff11\uff16"],
        "argument --num: expected an integer, got '\uff11\uff16' (see gram generate --help)"),
    Row("H92", ["eval", "{toy}", "--width", "\uff12"], "argument --width: expected comma-separated integers, got '\uff12'"),
    Row("H93", ["solve", "{toy}", "12..", "--depth", "+3"], "argument --depth: expected an integer, got '+3'"),
    Row("H94", ["report", "{toy}", "--out", "{tmp}/r.html", "--width", "100000"], "gram report: width must be <= 65536"),
    Row("H95", ["generate", "{toy}", "--show", "-1"], "argument --show: expected non-negative integer, got -1"),
    # --- user inputs (read_user_input, tasks.dimacs, tasks.sudoku_io, tasks.files)
    Row("H100", ["solve", "{gc}", "{file}"], "{file} line 2: vertex 9 out of range 1..3",
        setup=text("graph.txt", "p edge 3 1\ne 1 9\n")),
    Row("H101", ["solve", "{gc}", "{file}"], "{file} line 1: vertex count '\uff13' is not an integer",
        setup=text("fw.col", "p edge \uff13 0\n")),
    Row("H102", ["solve", "{gc}", "{file}"], "{file} line 2: vertex '0_1' is not an integer",
        setup=text("us.col", "p edge 3 1\ne 0_1 2\n")),
    Row("H103", ["solve", "{gc}", "{file}"], "{file} line 2: vertex '+1' is not an integer",
        setup=text("plus.col", "p edge 3 1\ne +1 2\n")),
    Row("H104", ["solve", "{gc}", "{file}"], "{file} line 1: edge count '0\\u2028' is not an integer",
        setup=text("ls.col", "p edge 3 0\u2028\n")),
    Row("H105", ["solve", "{gc}", "{file}"], "cannot read {file}: it is a character device, not a regular file",
        setup=in_tmp(lambda p, t: link(t / "g.col", device(t / "zero", 5))), marks=DEV),
    Row("H106", ["solve", "{toy}", "{file}"], "{file} is larger than the 1 MiB limit for input files",
        setup=text("big.txt", "1" * ((1 << 20) + 1))),
    Row("H107", ["solve", "{toy}", "{file}"], "cannot read {file}: it is a FIFO, not a regular file",
        setup=in_tmp(lambda p, t: fifo(p))),
    Row("H108", ["solve", "{toy}", "{tmp}"], "cannot read {tmp}: it is a directory, not a regular file"),
    Row("H109", ["solve", "{toy}", "\uff11\uff12.."], "toy-perm-4: cell 1: bad character '\uff11' (use 1-4 or '.')"),
    Row("H110", ["solve", "{sd}", "\uff11" + "." * 15], "puzzle: bad character '\uff11' at cell r1c1"),
    Row("H111", ["data", "sudoku-4", "--data", "{file}"], "cannot read {file}: it is a character device",
        setup=in_tmp(lambda p, t: link(t / "p.txt", device(t / "zero", 5))), marks=DEV),
    Row("H112", ["data", "sudoku-4", "--data", "{file}"], "cannot read {file}: it is a FIFO, not a regular file",
        setup=in_tmp(lambda p, t: fifo(t / "p.txt"))),
    Row("H113", ["data", "sudoku-4", "--data", "{file}"], "{file}: line 2: field 'rating': not an integer: '+1'",
        setup=text("r.csv", "source,question,answer,rating\nx,.....43..1..2.4.,3214143241232341,+1\n")),
    Row("H114", ["data", "sudoku-4", "--data", "{file}"], "{file}: line 2: field 'rating': not an integer: '1_0'",
        setup=text("r.csv", "source,question,answer,rating\nx,.....43..1..2.4.,3214143241232341,1_0\n")),
    Row("H115", ["solve", "{gc}", "{file}"], "{file} is larger than the 1 MiB limit for input files",
        setup=text("big.col", "c " + "x" * (1 << 20) + "\np edge 3 0\n")),
    Row("H116", ["solve", "{gc}", "{file}"], "{file} line 2: malformed line 'e\\x0b1 2'",
        setup=text("vt.col", "p edge 3 1\ne\v1 2\n")),
]
IDS = [r.id for r in ROWS]
assert len(set(IDS)) == len(IDS) and len(ROWS) >= 60


@pytest.fixture(autouse=True)
def _release():
    yield
    while _HELD:
        os.close(_HELD.pop())
    while _SOCKETS:
        _SOCKETS.pop().close()


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=r.marks) for r in ROWS])
def test_hostile_row(row, env, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CACHE", str(env.cache))
    argv, message, _ = prepare(row, env, tmp_path)
    before, shapes = snapshot(env.root, tmp_path), kinds(tmp_path)
    res = run_inprocess(argv)
    check_one_line_error(res, message)
    assert snapshot(env.root, tmp_path) == before, "a file was written or changed"
    assert kinds(tmp_path) == shapes, "a path changed its kind (a device, FIFO or link was replaced)"
    assert not temp_files(env.root, tmp_path), "a temporary file was left behind"


# ------------------------------------------------------------------ behaviour that is correct, not an error
def test_H120_generate_writes_through_a_symlink(env, tmp_path, monkeypatch):
    """The link stays a link; the file it points to receives the samples."""
    monkeypatch.setenv("GRAM_CACHE", str(env.cache))
    target = _write(tmp_path / "target.jsonl", "old\n")
    link(tmp_path / "out.jsonl", target)
    res = run_inprocess(["generate", str(env.toy), "--num", "2", "--json", "--out", str(tmp_path / "out.jsonl")])
    assert res.rc == 0, res.err
    assert (tmp_path / "out.jsonl").is_symlink() and len(target.read_text().splitlines()) == 2


def test_H121_a_dimacs_graph_in_a_txt_file_is_read_as_a_graph(env, tmp_path, monkeypatch):
    """The rule: an INPUT naming a file is that file's content, and a graph task parses it as DIMACS."""
    monkeypatch.setenv("GRAM_CACHE", str(env.cache))
    graph = _write(tmp_path / "graph.txt", GOOD_COL)
    res = run_inprocess(["solve", str(env.gc), str(graph), "--width", "2", "--json"])
    assert res.rc == 0, res.err
    assert json.loads(res.out)["total_valid_answers"] is not None


@pytest.mark.parametrize("damage", ["token", "dtype", "shape"])
def test_H122_a_dataset_cache_with_bad_contents_is_rebuilt(env, tmp_path, monkeypatch, damage):
    import numpy as np

    cache = tmp_path / "cache"
    cache.mkdir()
    good = env.cache / "toy-perm-4-seed0.npz"
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    x = arrays["test/inputs"]
    arrays["test/inputs"] = {"token": np.full_like(x, 99), "dtype": x.astype(np.float32), "shape": x[:, :2]}[damage]
    np.savez(cache / good.name, **arrays)
    monkeypatch.setenv("GRAM_CACHE", str(cache))
    res = run_inprocess(["eval", str(env.toy), "--json", "--width", "1", "--max-inputs", "2"])
    assert res.rc == 0 and "Traceback" not in res.err, res.err
    assert (cache / good.name).read_bytes() == good.read_bytes()


def test_H123_a_failing_final_evaluation_cannot_lose_the_run(tmp_path):
    """An evaluation that fails at the end of training cannot lose the run: the checkpoint of the last batch is
    written before the error propagates (and a too-large train.eval_width is refused up front, H31/H32)."""
    from gram_pyro.config import OptimConfig
    from gram_pyro.trainer import Trainer
    from tests.helpers import batch, tiny

    def boom(gram):
        raise MemoryError("evaluation ran out of memory")

    x, y = batch(4)
    trainer = Trainer(tiny(), x, y, OptimConfig(batch_size=4, warmup=0), evaluate=boom,
                      checkpoint_path=tmp_path / "checkpoint.pt")
    with pytest.raises(MemoryError):
        trainer.run(2)
    assert checkpoint.load(tmp_path / "checkpoint.pt")["batch"] == 2


def test_H124_a_second_writer_of_a_run_folder_fails_at_once(tmp_path):
    with files.run_lock(tmp_path):
        with pytest.raises(files.FileRuleError, match="is in use by another gram process"):
            with files.run_lock(tmp_path):
                pass
    with files.run_lock(tmp_path):  # released: the next writer gets it
        pass


def test_H125_training_into_a_run_gram_started_may_overwrite_its_own_files(env, tmp_path, monkeypatch):
    """A run folder with gram's marker but no checkpoint yet (e.g. killed before the first one) is gram's."""
    monkeypatch.setenv("GRAM_CACHE", str(env.cache))
    out = tmp_path / "run"
    out.mkdir()
    (out / runfolder.MARKER).write_text(json.dumps({"format": 1, "task": "toy-perm-4", "seed": 0, "data": None}))
    (out / "history.jsonl").write_text('{"kind": "train", "batch": 0}\n')
    res = run_inprocess(TRAIN + ["--out", str(out)])
    assert res.rc == 0, res.err
    assert (out / "checkpoint.pt").is_file() and (out / "config.json").is_file()


INTERRUPT_AT_IMPORT = r'''
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "gram_tasks":
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
import gram_cli
'''


def test_H126_ctrl_c_during_start_up_is_one_line_and_exit_code_130():
    res = subprocess.run([sys.executable, "-c", INTERRUPT_AT_IMPORT], capture_output=True, text=True, timeout=300)
    assert res.returncode == 130 and res.stderr.strip() == "gram: interrupted", res.stderr


def test_H128_import_gram_pyro_loads_no_torch():
    """``import gram_pyro`` is lazy (PEP 562): the start-up window in which a Ctrl-C could escape as a traceback,
    before cli/__init__.py guards the heavy imports, holds no torch import."""
    code = "import sys, gram_pyro; print('torch' in sys.modules, gram_pyro.GRAM.__name__, 'torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.split() == ["False", "GRAM", "True"], res.stdout + res.stderr


def test_H127_ctrl_c_in_a_command_is_one_line_and_exit_code_130(env, monkeypatch):
    from gram_cli import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "load_run", interrupted)
    res = run_inprocess(["eval", str(env.toy)])
    assert res.rc == 130 and res.err.strip() == "gram: interrupted", res.err


def test_hostile_rows_match_the_table():
    """Every row id of this file appears in docs/reliability.md's table of hostile rows (ranges such as H43–H48
    count for each id in them)."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    ids = set()
    for first, last in re.findall(r"^\| H(\d+)(?:–H(\d+))? \|", doc, flags=re.M):
        ids |= {f"H{i:02d}" for i in range(int(first), int(last or first) + 1)}
    tests = {name.split("_")[1] for name in globals() if name.startswith("test_H")}
    assert set(IDS) | tests <= ids, sorted((set(IDS) | tests) - ids)
