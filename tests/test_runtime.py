"""Training runtime: configs, exact resume, crash safety, multi-process equivalence, evaluation."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gram_pyro import checkpoint
from gram_cli import api
from gram_pyro.runconfig import ConfigError, build_run_config
from gram_pyro.update import BatchNoise
from gram_pyro.config import OptimConfig
from gram_pyro.trainer import Trainer
from gram_pyro.config import TrainConfig
from tests.helpers import tiny

SIZES = {"vocab_size": 6, "seq_len": 4, "out_len": 4}
TRAIN = ["--task", "toy-perm-4", "--preset", "cpu-tiny", "--quiet", "--set", "train.eval_every=0"]


def gram_cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "gram_cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def train_records(run: Path):
    lines = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in lines if r["kind"] == "train"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))


def test_run_config_presets_overrides_and_errors():
    cfg = build_run_config("nqueens-8", SIZES, "cpu", ["model.D=32", "optim.lr=1e-2", "train.augment=false"])
    assert (cfg.model.D, cfg.optim.lr, cfg.train.augment, cfg.model.seq_len) == (32, 1e-2, False, 4)
    assert build_run_config("nqueens-8", SIZES, "paper").model.beta == 0.07
    with pytest.raises(ConfigError, match="unknown config key model.bogus"):
        build_run_config("nqueens-8", SIZES, "cpu", ["model.bogus=1"])
    with pytest.raises(ConfigError, match="model.D expects int, got 'big'"):
        build_run_config("nqueens-8", SIZES, "cpu", ["model.D=big"])
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        build_run_config("nqueens-8", SIZES, "nope")
    with pytest.raises(ConfigError, match="section.key=value"):
        build_run_config("nqueens-8", SIZES, "cpu", ["D=3"])
    with pytest.raises(ConfigError, match="train.batches must be >= 1"):
        build_run_config("nqueens-8", SIZES, "cpu", ["train.batches=0"])
    with pytest.raises(ConfigError, match="model.seq_len"):
        build_run_config("nqueens-8", SIZES, "cpu", ["model.seq_len=9"])


def test_batch_noise_is_the_same_whatever_the_partition():
    loc, scale = torch.zeros(4, 3), torch.ones(4, 3)
    import pyro
    import pyro.distributions as dist

    def draw(offset, rows):
        with BatchNoise(torch.Generator().manual_seed(1), 4, offset):
            with pyro.plate("i", rows):
                return pyro.sample("e", dist.Normal(loc[:rows], scale[:rows]).to_event(1))

    full = draw(0, 4)
    assert torch.equal(torch.cat([draw(0, 2), draw(2, 2)]), full)


def _trainer(tmp_path, gram=None, **train):
    x = torch.randint(2, 5, (48, 5), generator=torch.Generator().manual_seed(0))
    gram = gram or tiny(N_sup=2, T=2, K=1)
    tc = TrainConfig(**{"seed": 3, "eval_every": 0, "checkpoint_every": 0, **train})
    return Trainer(gram, x, x[:, :4] + 1, OptimConfig(batch_size=16, ema_decay=0.9), tc,
                   log_path=tmp_path / "h.jsonl", checkpoint_path=tmp_path / "c.pt", identity="t")


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    torch.manual_seed(0)
    a = _trainer(tmp_path / "a", gram=tiny(N_sup=2, T=2, K=1, seed=1))
    (tmp_path / "a").mkdir()
    a.run(5)
    (tmp_path / "b").mkdir()
    torch.manual_seed(0)
    b = _trainer(tmp_path / "b", gram=tiny(N_sup=2, T=2, K=1, seed=1), checkpoint_every=2)
    b.run(3)  # checkpoints after batches 2 and 3 (the end); pretend we died after batch 2's checkpoint
    shutil.copy(tmp_path / "b" / "c.pt", tmp_path / "b" / "keep.pt")
    b.run(4)  # lines for batch 3 that the resume must drop and replay
    torch.manual_seed(123)
    c = _trainer(tmp_path / "b", gram=tiny(N_sup=2, T=2, K=1, seed=9))
    c.resume(tmp_path / "b" / "keep.pt")
    assert c.batch == 3
    c.run(5)
    ra = [json.loads(l) for l in (tmp_path / "a" / "h.jsonl").read_text().splitlines()]
    rb = [json.loads(l) for l in (tmp_path / "b" / "h.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"], r["grad_norm"]) for r in ra] == [(r["step"], r["loss"], r["grad_norm"]) for r in rb]
    for (k, va), vb in zip(a.gram.state_dict().items(), c.gram.state_dict().values()):
        assert torch.equal(va, vb), k


def test_checkpoint_is_weights_only_versioned_and_refuses_foreign_files(tmp_path):
    t = _trainer(tmp_path)
    t.run(1)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["format"] == checkpoint.FORMAT and state["identity"] == "t" and "z0" in state["model"]
    with pytest.raises(checkpoint.CheckpointError, match="different task or model"):
        checkpoint.load(tmp_path / "c.pt", identity="other")
    (tmp_path / "bad.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:100])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or foreign"):
        checkpoint.load(tmp_path / "bad.pt")
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "none.pt")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    checkpoint.atomic_write_text(path, "old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write_bytes(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_train_eval_solve_generate_through_the_api(tmp_path):
    run = api.fit("toy-perm-4", tmp_path / "run", "cpu-tiny", ["train.batches=4", "train.eval_every=2"], progress=False)
    kinds = [r["kind"] for r in run.history]
    assert kinds.count("eval") == 2 and kinds.count("train") == 4 * run.config.model.N_sup
    ev = [r for r in run.history if r["kind"] == "eval"][-1]
    assert {"prior_acc", "elbo_full", "elbo_surrogate", "kl_per_transition"} <= set(ev)
    loaded = api.load_run(tmp_path / "run")
    rows = api.evaluate(loaded, widths=(1, 3), depths=(1, 4), max_inputs=10)
    assert [(r["depth"], r["width"]) for r in rows] == [(1, 1), (1, 3), (4, 1), (4, 3)]
    cold = api.evaluate(loaded, widths=(3,), max_inputs=10, tau=0.0)  # one trajectory per input, drawn 3 times
    same = api.sample(loaded, loaded.splits["test"].inputs[0], 4, tau=0.0)[0]
    assert cold[0]["distinct_valid"] <= 1.0 and (same == same[0]).all()
    out = api.solve(loaded, "12..", width=8)
    assert out["total_valid_answers"] == 2 and sum(s["count"] for s in out["solutions"]) + out["invalid"] == 8
    with pytest.raises(checkpoint.CheckpointError, match="already holds a run"):
        api.fit("toy-perm-4", tmp_path / "run", "cpu-tiny", ["train.batches=4"], progress=False)


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    cases = [
        (["train", "--task", "toy-perm-4", "--out", str(tmp_path / "r"), "--set", "model.K=two"], "model.K expects int"),
        (["train", "--task", "nope", "--out", str(tmp_path / "r")], "unknown task 'nope'"),
        (["eval", str(tmp_path / "missing")], "is not a run folder"),
        (["train", "--task", "toy-perm-4", "--out", str(tmp_path / "r"), "--resume"], "nothing to resume"),
    ]
    for argv, message in cases:
        res = gram_cli(*argv)
        assert res.returncode == 2, (argv, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_kill_9_during_training_then_resume_loses_nothing(tmp_path):
    """Every run on 2 threads (the suite's default is 1): bit for bit at the same thread count (docs/reliability.md)."""
    common = [*TRAIN, "--set", "train.batches=10", "--set", "train.checkpoint_every=2"]
    two = {"OMP_NUM_THREADS": "2"}
    assert gram_cli("train", *common, "--out", str(tmp_path / "ref"), env=two).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "gram_cli", "train", *common, "--out", str(tmp_path / "run")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **two})
    history = tmp_path / "run" / "history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (history.exists() and history.read_text().count("\"batch\": 5") > 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.load(tmp_path / "run" / "checkpoint.pt")["batch"] < 10
    res = gram_cli("train", *common, "--out", str(tmp_path / "run"), "--resume", env=two)
    assert res.returncode == 0, res.stderr
    assert train_records(tmp_path / "run") == train_records(tmp_path / "ref")


def test_torchrun_two_processes_match_one_process(tmp_path):
    common = [*TRAIN, "--set", "train.batches=3", "--set", "optim.batch_size=32", "--set", "train.checkpoint_every=0"]
    assert gram_cli("train", *common, "--out", str(tmp_path / "one")).returncode == 0
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "gram_cli", "train", *common, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    one, two = train_records(tmp_path / "one"), train_records(tmp_path / "two")
    assert len(one) == len(two) > 0
    for (s1, l1, g1), (s2, l2, g2) in zip(one, two):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-4, abs=1e-5) and g1 == pytest.approx(g2, rel=1e-3)
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k


def _inject_nan_at(monkeypatch, steps):
    from gram_pyro.update import StepLoss

    orig = StepLoss.forward
    calls = {"n": 0}

    def forward(self, *a, **k):
        loss, stats, carry, y_hat = orig(self, *a, **k)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] in steps else loss), stats, carry, y_hat

    monkeypatch.setattr(StepLoss, "forward", forward)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_stops_with_a_clear_error_and_the_last_checkpoint_intact(tmp_path, monkeypatch):
    from gram_pyro.trainer import NonFiniteError

    t = _trainer(tmp_path, checkpoint_every=1)
    t.run(2)
    good = torch.load(tmp_path / "c.pt", weights_only=True)
    _inject_nan_at(monkeypatch, {2})
    with pytest.raises(NonFiniteError, match="non-finite loss or gradient at update 5"):
        t.run(4)
    after = torch.load(tmp_path / "c.pt", weights_only=True)
    assert after["batch"] == 2 and all(torch.equal(good["model"][k], after["model"][k]) for k in good["model"])
    assert all(torch.isfinite(p).all() for p in t.gram.parameters())


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_skip_policy_skips_with_a_warning_and_a_bound(tmp_path, monkeypatch):
    from gram_pyro.trainer import NonFiniteError

    _inject_nan_at(monkeypatch, {2, 5})
    t = _trainer(tmp_path, nan_policy="skip", max_skips=2)
    with pytest.warns(RuntimeWarning, match="skipped a non-finite update"):
        t.run(4)
    assert t.skipped == 2 and t.batch == 4
    assert all(torch.isfinite(p).all() for p in t.gram.parameters())
    log = [json.loads(l) for l in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "skip" for r in log) == 2
    _inject_nan_at(monkeypatch, set(range(100)))
    with pytest.raises(NonFiniteError, match="more than 2 skipped"):
        t.run(8)


def test_selected_answers_report_validity_and_conflicts():
    """``api.evaluate``'s per-selection columns: the picked answer's validity and, for graph colouring, its
    conflict edges summed over the inputs (the Table 1 metric of a vote- or LPRM-selected answer)."""
    import numpy as np
    import gram_tasks as tasks

    task = tasks.get_task("graph-coloring-6")
    split = task.build(0)["test"]
    x = split.inputs[:3]
    mono = np.full(6, 3)
    good, bad = torch.as_tensor(np.stack([s[0] for s in split.solutions[:3]])), torch.as_tensor(np.stack([mono] * 3))
    mixed = torch.stack([good[0], bad[1], good[2]])
    out = api._selected_metrics(task, x, {"vote": mixed, "lprm": bad})
    assert out["vote_acc"] == pytest.approx(2 / 3) and out["lprm_acc"] == 0.0
    assert out["vote_conflicts"] == int((x[1] == 2).sum())  # a one-colour answer conflicts on every edge
    assert out["lprm_conflicts"] == int((x == 2).sum())
    assert "vote_conflicts" not in api._selected_metrics(tasks.get_task("toy-perm-4"), np.zeros((1, 4), int),
                                                         {"vote": torch.zeros(1, 4, dtype=torch.long)})


def test_keep_freed_memory_tunes_glibc_and_leaves_a_users_malloc_settings_alone(monkeypatch):
    """The guarantee tested: on glibc both mallopt calls succeed (mallopt returns 1); with a ``MALLOC_*_``
    variable, ``GLIBC_TUNABLES`` or ``GRAM_KEEP_FREED_MEMORY=0`` set, nothing is changed.  Its effect on time and
    memory is measured by bench/throughput.py, not here."""
    from gram_cli import keep_freed_memory

    for k in [k for k in os.environ if k.startswith("MALLOC_") and k.endswith("_") or k == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(k)
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError):
        glibc = False
    assert keep_freed_memory() is glibc
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TOP_PAD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("GRAM_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


def test_cosine_decay_runs_from_lr_after_the_warm_up_to_min_lr_ratio_at_the_last_update():
    from gram_pyro.update import lr_factor

    oc = OptimConfig(decay="cosine", warmup=4, min_lr_ratio=0.1)
    factors = [lr_factor(oc, s, 24) for s in range(30)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and factors[4] == 1.0
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[22] > 0.1 and factors[23] == pytest.approx(0.1) and factors[29] == pytest.approx(0.1)
    assert [lr_factor(OptimConfig(warmup=4), s, None) for s in (3, 4, 29)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="optim.decay expects constant or cosine"):
        OptimConfig(decay="linear")
    x = torch.randint(2, 5, (16, 5), generator=torch.Generator().manual_seed(0))
    gram = tiny(N_sup=2, T=1, K=1)
    oc = OptimConfig(decay="cosine", warmup=1, batch_size=8, min_lr_ratio=0.25)
    t = Trainer(gram, x, x[:, :4] + 1, oc, TrainConfig(batches=3, eval_every=0, checkpoint_every=0, device="cpu"))
    t.run(3)  # 3 batches x N_sup = 2 updates; the scheduler has stepped past the last one, which used the floor
    assert t.step == 6 and t.sched.get_last_lr()[0] == pytest.approx(oc.lr * 0.25, rel=1e-6)
    assert lr_factor(oc, 5, 6) == pytest.approx(0.25) and lr_factor(oc, 4, 6) > 0.25


def test_make_optimizer_runs_adamw_fused_on_the_cpu_with_the_per_tensor_update():
    """The fused AdamW kernel (issue 18) gives the per-tensor loop's parameters to float rounding (1e-6 relative)
    after five updates from the same state and gradients; bitwise equality is not claimed."""
    from gram_pyro.update import make_optimizer

    gram, ref = tiny(N_sup=2, T=1, K=1), tiny(N_sup=2, T=1, K=1)
    ref.load_state_dict(gram.state_dict())
    oc = OptimConfig(warmup=2)
    opt, sched = make_optimizer(gram, oc)
    assert opt.param_groups[0]["fused"] is True
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=oc.lr, weight_decay=oc.weight_decay, betas=oc.betas,
                                foreach=False)
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, sched.lr_lambdas[0])
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        for p, q in zip(gram.parameters(), ref.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step(), sched.step(), ref_opt.step(), ref_sched.step()
    for p, q in zip(gram.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
