"""Speed and memory ratios, each measured in one run (issue: "the cost of every layer").

    python bench/speed.py [--preset cpu] [--batch 64] [--seq-len 64] [--repeats 20] [--write]

1. Pyro step vs a hand-written torch step of the same loss (bench/handwritten.py), same model, batch and
   noise (the two losses are checked equal first): ratio of median times per supervision-step update; and the
   same at batch 1 and 4 tokens, where the arithmetic is negligible and the difference is Pyro's fixed cost
   (messengers, sites, traces) per update.
2. Width: per-trajectory cost of prior rollouts at N = 20 vs N = 1 (N folded into the batch), for 16 inputs
   and for one input (what ``gram solve`` does).
3. Memory: peak resident memory of training with N_sup = 16 vs N_sup = 4 (fresh subprocess each).
4. torchrun with 2 CPU processes vs 1 process: training samples per second, once with the single process
   using every core and once with one thread per process.
5. FLOP rates (bench/throughput.py's measurements, on ``--flops-task``): the machine's fp32 matmul peak, GFLOP/s
   and percent of peak of a training batch and of prior rollouts, and the evaluation's system/user CPU time and
   peak RSS (``--inputs`` x ``--width`` trajectories of ``--depth`` steps, in a fresh process).
6. Learning per CPU minute (only with ``--learning-minutes M`` or ``--learning-from RUN``): the CPU minutes of
   training after which the prior rollouts' validity on held-out inputs first reached ``--target`` (0.95), read
   from the run's evaluations (``prior_acc``) and the CPU seconds of its updates; ``--learning-minutes`` first
   trains GRAM on nqueens-8 with the preset for M CPU minutes, evaluating every ``--learning-every`` batches, once
   per seed of ``--learning-seeds`` (default 0; a row each, and their median: the time varies from seed to seed),
   ``--learning-jobs`` runs at a time (2: two one-thread runs share two cores); ``--learning-from`` reads
   finished runs (folders, comma-separated).

The model is the one ``gram train --preset PRESET`` builds (gram_pyro/configs/PRESET.yaml).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results  # noqa: E402
from handwritten import handwritten_loss  # noqa: E402

from gram_pyro import GRAM, prior_rollouts  # noqa: E402
from gram_cli import setup_runtime  # noqa: E402
from gram_pyro.runconfig import build_run_config  # noqa: E402
from gram_pyro.update import BatchNoise, StepLoss, make_optimizer  # noqa: E402
from gram_pyro.config import OptimConfig  # noqa: E402


def data(args, B=None):
    g = torch.Generator().manual_seed(0)
    B = B or args.batch
    x = torch.randint(1, 6, (B, args.seq_len), generator=g)
    return x, torch.randint(2, 6, (B, args.seq_len), generator=g)


def model_config(args, **changes):
    """The model of ``gram train --preset PRESET`` (configs/PRESET.yaml) for this benchmark's sizes."""
    sizes = dict(vocab_size=6, seq_len=args.seq_len)
    return build_run_config("bench", sizes, args.preset).model.replace(**changes)


def step_fns(args):
    """The two updates compared: (our Trainer step: StepLoss under BatchNoise + AdamW, the hand-written one);
    each takes the noise seed ``i``.  Their losses are checked equal on the same noise first."""
    x, y = data(args)
    gram = GRAM(model_config(args))
    c = gram.cfg
    step_loss = StepLoss(gram, c.alpha)
    opt, _ = make_optimizer(gram, OptimConfig())
    h0, l0 = gram.initial_carry(x.shape[:1])
    with torch.no_grad():  # same noise -> same loss: checks the reference is the same computation
        with BatchNoise(torch.Generator().manual_seed(7), len(x)):
            ours = step_loss(x, y, None, 0)[0]
        ref = handwritten_loss(gram, x, y, h0, l0, c.beta, c.alpha, torch.Generator().manual_seed(7))[0]
    assert abs(float(ours) - float(ref)) < 1e-4 * max(1.0, abs(float(ref))), (float(ours), float(ref))

    def ours_step(i):
        with BatchNoise(torch.Generator().manual_seed(i), len(x)):
            loss = step_loss(x, y, None, 0)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    def ref_step(i):
        loss = handwritten_loss(gram, x, y, h0, l0, c.beta, c.alpha, torch.Generator().manual_seed(i))[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return ours_step, ref_step


def step_ratio(args) -> dict:
    """Median ms per update: our Trainer step (StepLoss under BatchNoise + AdamW) vs the hand-written one."""
    ours_step, ref_step = step_fns(args)
    times = {"pyro": [], "torch": []}
    for i in range(args.repeats + 2):  # interleaved, first two are warm-up
        for name, fn in (("pyro", ours_step), ("torch", ref_step)):
            t0 = time.perf_counter()
            fn(i)
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"pyro_ms": med["pyro"], "torch_ms": med["torch"], "ratio": med["pyro"] / med["torch"]}


def width_ratio(args, inputs: int) -> dict:
    """Per-trajectory prior-rollout cost at N = 20 vs N = 1 for ``inputs`` inputs (N folded into the batch)."""
    x, _ = data(args, B=inputs)
    gram = GRAM(model_config(args)).eval()
    out = {}
    for n in (1, 20):
        ts = []
        for _ in range(max(3, args.repeats // 4)):
            t0 = time.perf_counter()
            prior_rollouts(gram, x, num_samples=n)
            ts.append((time.perf_counter() - t0) / n)
        out[n] = statistics.median(ts) * 1e3
    return {"n1_ms_per_traj": out[1], "n20_ms_per_traj": out[20], "ratio": out[20] / out[1]}


MEM_SCRIPT = """
import resource, sys, torch
from gram_pyro import GRAM
from gram_cli import setup_runtime
from gram_pyro.runconfig import build_run_config
from gram_pyro.config import OptimConfig
from gram_pyro.trainer import Trainer
setup_runtime()
n_sup, seq, B, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
g = torch.Generator().manual_seed(0)
x = torch.randint(1, 6, (B, seq), generator=g); y = torch.randint(2, 6, (B, seq), generator=g)
model = build_run_config("bench", dict(vocab_size=6, seq_len=seq), name).model.replace(N_sup=n_sup)
Trainer(GRAM(model), x, y, OptimConfig(batch_size=B)).run(2)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_ratio(args) -> dict:
    """Peak RSS (MiB) of a fresh process training 2 batches at N_sup = 4 and 16; the baseline process too."""
    rss = {}
    for n_sup in (4, 16):
        res = subprocess.run([sys.executable, "-c", MEM_SCRIPT, str(n_sup), str(args.seq_len), str(args.batch),
                              args.preset], capture_output=True, text=True, check=True)
        rss[n_sup] = int(res.stdout.split()[-1]) / 1024
    return {"nsup4_mib": rss[4], "nsup16_mib": rss[16], "ratio": rss[16] / rss[4]}


def ddp_throughput(args, threads_per_process: int | None) -> dict:
    """Steady-state training samples/s with 1 vs 2 processes, from the per-update times in the run's log
    (rank 0's; each update processes the whole global batch; the first batch is warm-up).

    ``threads_per_process=None``: the single process uses every core (torchrun's processes share them);
    ``1``: every process gets one thread, so the ratio measures data-parallel scaling alone.
    """
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRAM_CACHE": str(Path(tmp) / "cache")}
        env.pop("OMP_NUM_THREADS", None)
        if threads_per_process is not None:
            env["OMP_NUM_THREADS"] = str(threads_per_process)
        batches = 8
        common = ["-m", "gram_cli", "train", "--task", "nqueens-8", "--preset", args.preset, "--quiet",
                  "--set", f"train.batches={batches}", "--set", "train.eval_every=0", "--set",
                  "train.checkpoint_every=0", "--set", f"optim.batch_size={args.batch}"]
        for procs in (1, 2):
            launcher = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                            "--standalone", f"--nproc_per_node={procs}"]
            run = Path(tmp) / f"p{procs}"
            subprocess.run([*launcher, *common, "--out", str(run)], check=True, env=env, capture_output=True)
            recs = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
            secs = [r["seconds"] for r in recs if r["kind"] == "train" and r["batch"] > 0]
            rates[procs] = args.batch / statistics.median(secs)
    return {"p1_samples_s": rates[1], "p2_samples_s": rates[2], "ratio": rates[2] / rates[1]}


def flop_rates(args) -> dict:
    """bench/throughput.py's peak, training and rollout measurements on ``--flops-task`` (item 5)."""
    import throughput

    targs = argparse.Namespace(preset=args.preset, task=args.flops_task, batch=args.batch, inputs=args.inputs,
                               width=args.width, depth=args.depth, repeats=max(3, args.repeats // 4))
    peak = throughput.peak_gflops()
    train, matmuls = throughput.training(targs, peak)
    return {"peak": peak, "training": train, "matmuls": matmuls, "rollouts": throughput.rollouts(targs, peak, None)}


def cpu_minutes_to(history: Path, target: float) -> tuple[float | None, int | None, float]:
    """(CPU minutes, batch) at the first evaluation with ``prior_acc`` >= ``target`` (None if never), and the
    best ``prior_acc`` of the whole run: CPU time summed over the training updates up to that evaluation's batch."""
    recs = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    cpu = 0.0
    best, reached = 0.0, (None, None)
    for r in recs:
        if r.get("kind") == "train":
            cpu += r["cpu_seconds"]
        elif r.get("kind") == "eval" and "prior_acc" in r:
            best = max(best, r["prior_acc"])
            if r["prior_acc"] >= target and reached[0] is None:
                reached = (cpu / 60, r["batch"])
    return *reached, best


def learning_run(args, seed: int) -> Path:
    """A fresh nqueens-8 run of ``--learning-minutes`` CPU minutes with ``seed`` (model and data order)."""
    from gram_cli import api

    run = Path(tempfile.mkdtemp(prefix="gram-speed-")) / "nq8"
    sets = [f"train.eval_every={args.learning_every}", "train.batches=100000", "train.checkpoint_every=0",
            f"train.eval_inputs={args.learning_inputs}", f"model.seed={seed}", f"train.seed={seed}", *args.learning_set]
    api.fit("nqueens-8", run, preset=args.preset, sets=sets, progress=False, max_cpu_seconds=args.learning_minutes * 60)
    return run


def run_seed(run: Path) -> int | None:
    """The training seed a finished run recorded in its config.json (None if it has none)."""
    try:
        return json.loads((run / "config.json").read_text())["train"]["seed"]
    except (OSError, ValueError, KeyError):
        return None


def learning_seed(args, seed: int) -> Path:
    """:func:`learning_run` in a worker process of ``--learning-jobs``: one thread per process, as
    ``bench/quality.py --jobs`` (the processes share the cores)."""
    setup_runtime()
    torch.set_num_threads(1)
    return learning_run(args, seed)


def learning(args) -> list[dict]:
    """Item 6: time to ``--target`` validity, from the runs of ``--learning-from`` or fresh runs, one per seed of
    ``--learning-seeds`` (the time varies from seed to seed), ``--learning-jobs`` at a time (one thread
    each)."""
    if args.learning_from:
        runs = [(run_seed(Path(p)), Path(p)) for p in args.learning_from.split(",")]
    else:
        seeds = [int(s) for s in args.learning_seeds.split(",")]
        if args.learning_jobs > 1:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(args.learning_jobs, mp_context=spawn) as pool:
                paths = list(pool.map(learning_seed, [args] * len(seeds), seeds))
        else:
            paths = [learning_run(args, seed) for seed in seeds]
        runs = list(zip(seeds, paths))
    out = []
    for seed, run in runs:
        minutes, batch, best = cpu_minutes_to(run / "history.jsonl", args.target)
        out.append({"seed": seed, "run": str(run), "minutes": minutes, "batch": batch, "best": best})
    return out


def flops_lines(r: dict | None) -> list[str]:
    """Item 5 as rows of the same table: achieved / peak GFLOP/s, and the evaluation's sys/user and RSS."""
    if r is None:
        return []
    out = []
    for part, target in (("training", "≥ 60 %"), ("matmuls", "(ceiling)"), ("rollouts", "≥ 45 %")):
        m = r[part]
        out.append(f"| {m['what']}: GFLOP/s / fp32 matmul peak | {m['gflop_s']:.2f} | {r['peak']:.2f} | "
                   f"{m['peak_pct'] / 100:.2f} | {target} |")
    m = r["rollouts"]
    out.append(f"| {m['what']}: system / user CPU time | — | — | {m['sys_user']:.2f} | ≤ 0.1 |")
    out.append(f"| {m['what']}: peak RSS (MiB) | {m['rss_mib']:.0f} | — | — | ≤ 1024 |")
    return out


def learning_lines(runs: list[dict] | None, target: float) -> list[str]:
    """Item 6, a row per run: CPU minutes to the target validity ("not reached" when never; the best is shown);
    with several runs, a last row with their median (a run that never reached it counts as slower than all)."""
    out = []
    label = f"nqueens-8 prior validity ≥ {target} on held-out boards reached after"
    for r in runs or []:
        got = "not reached" if r["minutes"] is None else f"{r['minutes']:.2f} CPU min (batch {r['batch']})"
        seed = "" if r["seed"] is None else f", seed {r['seed']}"
        out.append(f"| {label}{seed} | {got} | best {r['best']:.3f} | — | ≤ 5 CPU min |")
    if runs and len(runs) > 1:
        median = statistics.median(math.inf if r["minutes"] is None else r["minutes"] for r in runs)
        got = "not reached" if math.isinf(median) else f"{median:.2f} CPU min"
        reached = sum(r["minutes"] is not None for r in runs)
        out.append(f"| {label}, median of {len(runs)} runs | {got} | reached in {reached} | — | ≤ 5 CPU min |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: step,width,memory,ddp,flops")
    ap.add_argument("--flops-task", default="nqueens-10")
    ap.add_argument("--inputs", type=int, default=500, help="inputs of the evaluation in the flops part")
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--learning-minutes", type=float, default=0.0)
    ap.add_argument("--learning-from", default="", help="finished nqueens-8 run folders to read instead (commas)")
    ap.add_argument("--learning-every", type=int, default=50)
    ap.add_argument("--learning-inputs", type=int, default=200)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--learning-set", action="append", default=[], help="a --set KEY=VALUE for the learning run")
    ap.add_argument("--learning-seeds", default="0", help="comma-separated seeds: one learning run each")
    ap.add_argument("--learning-jobs", type=int, default=1, help="learning runs at a time, one thread each")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    missing = [r for r in filter(None, args.learning_from.split(",")) if not (Path(r) / "history.jsonl").is_file()]
    if missing:
        ap.error(f"--learning-from: no history.jsonl in {', '.join(missing)}")
    if args.learning_jobs < 1:
        ap.error("--learning-jobs must be at least 1")
    if not all(seed.strip().lstrip("-").isdigit() for seed in args.learning_seeds.split(",")):
        ap.error(f"--learning-seeds expects comma-separated integers, got {args.learning_seeds!r}")
    setup_runtime()
    skip = set(args.skip.split(","))
    parts = {
        "step": step_ratio,
        "step_tiny": lambda a: step_ratio(argparse.Namespace(**{**vars(a), "batch": 1, "seq_len": 4})),
        "width": lambda a: width_ratio(a, inputs=16),
        "width1": lambda a: width_ratio(a, inputs=1),
        "memory": memory_ratio,
        "ddp": lambda a: ddp_throughput(a, threads_per_process=None),
        "ddp1": lambda a: ddp_throughput(a, threads_per_process=1),
        "flops": flop_rates,
    }
    if args.learning_minutes > 0 or args.learning_from:
        parts["learning"] = learning
    group = {"step_tiny": "step", "width1": "width", "ddp1": "ddp"}
    results = {k: fn(args) for k, fn in parts.items() if group.get(k, k) not in skip}
    rows = {
        "step": ("Pyro step / hand-written torch step (same loss, model, batch, noise)", "pyro_ms", "torch_ms", "≤ 1.03"),
        "step_tiny": ("the same at batch 1, 4 tokens: the difference is Pyro's fixed cost per update (ms)", "pyro_ms",
                      "torch_ms", "—"),
        "width": ("per-trajectory rollout cost, N = 20 / N = 1, 16 inputs (ms)", "n20_ms_per_traj", "n1_ms_per_traj",
                  "≤ 0.5"),
        "width1": ("per-trajectory rollout cost, N = 20 / N = 1, one input (`gram solve`) (ms)", "n20_ms_per_traj",
                   "n1_ms_per_traj", "≤ 0.5"),
        "memory": ("peak memory of training, N_sup = 16 / N_sup = 4 (MiB)", "nsup16_mib", "nsup4_mib", "≤ 1.10"),
        "ddp": ("training samples/s, torchrun 2 processes / 1 process using all cores", "p2_samples_s",
                "p1_samples_s", "≥ 1.6"),
        "ddp1": ("training samples/s, torchrun 2 processes / 1 process, one thread per process", "p2_samples_s",
                 "p1_samples_s", "≥ 1.6"),
    }
    lines = ["| measurement | numerator | denominator | ratio | target |", "|---|---|---|---|---|"]
    for k, r in results.items():
        if k in rows:
            label, a, b, target = rows[k]
            lines.append(f"| {label} | {r[a]:.2f} | {r[b]:.2f} | {r['ratio']:.2f} | {target} |")
    lines += flops_lines(results.get("flops")) + learning_lines(results.get("learning"), args.target)
    table = "\n".join(lines)
    print(table)
    if args.write:
        m = model_config(args)
        where = "at the prior mean" if m.truncated_from == "prior_mean" else f"from the {m.truncated_from}"
        append_results(f"Speed and memory ratios, preset `{args.preset}` ({m.mixer} mixer, truncated transitions "
                       f"{where}), batch {args.batch}, sequence {args.seq_len}",
                       table, note=f"medians of {args.repeats} repeats")

if __name__ == "__main__":
    main()
