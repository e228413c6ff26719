"""FLOP rates against the machine's peak, and the cost of an evaluation, each measured in one run (issue 18).

    python bench/throughput.py [--preset cpu] [--task nqueens-10] [--inputs 100] [--width 20] [--depth 16] [--no-fixed]
        [--no-glibc-default] [--write]

1. Peak: median GFLOP/s of a 1024³ float32 matmul in this process.
2. Training: one batch of the run preset (every supervision-step update: forward, backward, AdamW) on random
   tokens of the task's sizes; FLOPs from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention),
   median time of ``--repeats`` batches: GFLOP/s and percent of peak.  Beside it, the same batch's matrix
   multiplications alone (every ``mm``/``addmm``/``bmm`` it calls, recorded with their shapes and strides and
   replayed on fresh tensors in the same order): the share of the batch's time they take, and the percent of
   peak a batch would reach if everything else cost nothing — the ceiling for these shapes (exact for the
   sequence-MLP mixer; with attention, ``scaled_dot_product_attention``'s FLOPs are counted but not replayed).
3. Rollouts: ``--inputs`` × ``--width`` prior trajectories of ``--depth`` steps (what ``gram eval`` runs), in a
   fresh process each, once with the rollout chunks sized by the element budget
   (``gram_pyro.inference.rows_per_chunk``, the default) and once with the former fixed 4,096 rows: wall time,
   user and system CPU time, peak RSS (the subprocess's own VmHWM), GFLOP/s and percent of peak (FLOPs counted
   on one input and scaled: every trajectory step costs the same).  A third rollout row runs the default chunks
   under glibc's own malloc settings (``GRAM_KEEP_FREED_MEMORY=0``, see below), unless ``--no-glibc-default``.

Every process runs under ``gram_cli.setup_runtime`` as the ``gram`` commands do; the header line says whether
glibc's malloc was set to keep freed memory (``keep_freed_memory``).  An untrained model costs what a trained one
does, so no training run is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402

import gram_tasks as tasks  # noqa: E402
from gram_pyro import GRAM, prior_rollouts  # noqa: E402
from gram_cli import keep_freed_memory, setup_runtime  # noqa: E402
from gram_cli.api import task_sizes  # noqa: E402
from gram_pyro.runconfig import build_run_config  # noqa: E402
from gram_pyro.config import OptimConfig  # noqa: E402
from gram_pyro.trainer import Trainer  # noqa: E402


def model_config(args):
    return build_run_config(args.task, task_sizes(tasks.get_task(args.task)), args.preset).model


def tokens(cfg, rows: int, length: int, low: int = 0) -> torch.Tensor:
    return torch.randint(low, cfg.vocab_size, (rows, length), generator=torch.Generator().manual_seed(0))


def peak_gflops(repeats: int = 10) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * 1024**3 / statistics.median(ts) / 1e9


MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


class MatmulRecorder(TorchDispatchMode):
    """Records (op, [(shape, stride) of each tensor argument]) of every matrix multiplication that runs under it."""

    def __init__(self):
        super().__init__()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            self.calls.append((func, [(a.shape, a.stride()) for a in args if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))


def replay_seconds(calls: list, repeats: int) -> float:
    """Median seconds of running ``calls`` (a :class:`MatmulRecorder`'s) alone, on fresh tensors of the same layout."""
    operands = [(func, [_strided_randn(s, st) for s, st in shapes]) for func, shapes in calls]
    ts = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        for func, ops in operands:
            func(*ops)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts[1:])


def _strided_randn(shape, stride) -> torch.Tensor:
    storage = 1 + sum((n - 1) * st for n, st in zip(shape, stride))
    return torch.randn(storage).as_strided(shape, stride)


def _rate(what: str, flops: float, seconds: float, peak: float) -> dict:
    """A table row: GFLOP, seconds, GFLOP/s and percent of ``peak``."""
    return {"what": what, "gflop": flops / 1e9, "seconds": seconds, "gflop_s": flops / seconds / 1e9,
            "peak_pct": 100 * flops / seconds / 1e9 / peak}


def training(args, peak: float) -> list[dict]:
    """GFLOP/s of the run preset's training batches (all N_sup updates of a batch), and of their matmuls alone."""
    cfg = model_config(args)
    x, y = tokens(cfg, args.batch, cfg.seq_len), tokens(cfg, args.batch, cfg.L_out)
    t = Trainer(GRAM(cfg), x, y, OptimConfig(batch_size=args.batch))
    t.run(1)  # warm-up
    with FlopCounterMode(display=False) as fc, MatmulRecorder() as rec:
        t.run(2)
    flops = fc.get_total_flops()
    ts = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        t.run(t.batch + 1)
        ts.append(time.perf_counter() - t0)
    seconds, mm_seconds = statistics.median(ts), replay_seconds(rec.calls, args.repeats)
    return [_rate(f"training batch ({args.batch} rows, N_sup = {cfg.N_sup})", flops, seconds, peak),
            _rate(f"its {len(rec.calls)} matmuls alone ({mm_seconds / seconds:.0%} of the batch's time)", flops,
                  mm_seconds, peak)]


ROLLOUT_SCRIPT = """
import json, os, resource, sys, time
import torch
sys.path.insert(0, {bench!r})
from throughput import model_config, tokens
from gram_pyro import GRAM, prior_rollouts
from gram_cli import setup_runtime
args = json.loads(sys.argv[1])
setup_runtime()
ns = type("A", (), args)
cfg = model_config(ns)
gram = GRAM(cfg).eval()
x = tokens(cfg, args["inputs"], cfg.seq_len, low=1)
t0, c0 = time.perf_counter(), os.times()
prior_rollouts(gram, x, args["width"], depth=args["depth"], chunk_size=args["chunk"])
t1, c1 = time.perf_counter(), os.times()
# VmHWM: this process's own peak; ru_maxrss keeps the parent's peak across fork + exec on Linux
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")] if os.path.exists("/proc/self/status") else []
rss_kib = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(wall=t1 - t0, user=c1.user - c0.user, sys=c1.system - c0.system, rss_mib=rss_kib / 1024)))
"""


def rollout_flops(args) -> float:
    """FLOPs of ``inputs × width × depth`` trajectory steps, counted on one input's ``width`` trajectories, one step."""
    cfg = model_config(args)
    gram = GRAM(cfg).eval()
    with FlopCounterMode(display=False) as fc:
        prior_rollouts(gram, tokens(cfg, 1, cfg.seq_len, low=1), args.width, depth=1)
    return fc.get_total_flops() * args.inputs * args.depth


def rollouts(args, peak: float, chunk: int | None, glibc_default: bool = False) -> dict:
    """One rollout subprocess; ``glibc_default`` runs it with ``GRAM_KEEP_FREED_MEMORY=0`` (glibc's own malloc)."""
    spec = {k: getattr(args, k) for k in ("task", "preset", "inputs", "width", "depth")}
    env = {**os.environ, **({"GRAM_KEEP_FREED_MEMORY": "0"} if glibc_default else {})}
    res = subprocess.run([sys.executable, "-c", ROLLOUT_SCRIPT.format(bench=str(Path(__file__).parent)),
                          json.dumps({**spec, "chunk": chunk})], capture_output=True, text=True, check=True, env=env)
    m = json.loads(res.stdout.splitlines()[-1])
    flops = rollout_flops(args)
    label = "element budget (default)" if chunk is None else f"fixed {chunk} rows"
    label += ", glibc's malloc defaults" if glibc_default else ""
    what = f"rollouts, {args.inputs} inputs × N = {args.width} × depth {args.depth}, chunks: {label}"
    return {**_rate(what, flops, m["wall"], peak), "sys_user": m["sys"] / max(m["user"], 1e-9), "rss_mib": m["rss_mib"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--task", default="nqueens-10")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-fixed", action="store_true", help="skip the rollouts with the former fixed 4,096-row chunks")
    ap.add_argument("--no-glibc-default", action="store_true",
                    help="skip the rollouts under glibc's own malloc settings (GRAM_KEEP_FREED_MEMORY=0)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    setup_runtime()
    kept = keep_freed_memory()  # what setup_runtime did: True where it applied
    peak = peak_gflops()
    rows = [*training(args, peak), rollouts(args, peak, None)] + ([] if args.no_fixed else [rollouts(args, peak, 4096)])
    if not args.no_glibc_default and kept:
        rows.append(rollouts(args, peak, None, glibc_default=True))
    peak_after = peak_gflops()
    keys = ["what", "gflop", "seconds", "gflop_s", "peak_pct", "sys_user", "rss_mib"]
    table = markdown_table(rows, keys)
    note = (f"fp32 1024³ matmul peak {peak:.1f} GFLOP/s before and {peak_after:.1f} after, {torch.get_num_threads()} "
            f"threads; task `{args.task}` sizes, preset `{args.preset}`; rollouts in a fresh process each; freed "
            f"memory kept in the heap (`keep_freed_memory`): {'yes' if kept else 'no'}")
    print(note)
    print(table)
    if args.write:
        append_results(f"FLOP rates against the matmul peak, preset `{args.preset}`, task `{args.task}`", table, note)


if __name__ == "__main__":
    main()
