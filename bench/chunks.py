"""Rollout chunk budget against cache and memory: prior rollouts timed at several element budgets (issue 18).

    python bench/chunks.py [--tasks nqueens-10,nqueens-8] [--preset cpu] [--budgets 19,20,21,22,23] [--inputs 50]
        [--width 20] [--depth 8] [--rounds 4] [--write]

For each task, ``--inputs`` × ``--width`` prior trajectories of ``--depth`` steps (what ``gram eval`` runs) on an
untrained model of the run preset (it costs what a trained one does), with chunks of
``rows_per_chunk(cfg, 2**k)`` trajectories for each k of ``--budgets`` (``gram_pyro.inference.CHUNK_ELEMENTS`` is
the default).  The budgets run in one process, in ``--rounds`` rounds whose order alternates (forward, then
backward), so a drift of the machine's speed falls on every budget alike; printed: rows per chunk, the widest
activation in MiB, the median seconds and their ratio to the default budget's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402
from throughput import tokens  # noqa: E402

import gram_tasks as tasks  # noqa: E402
from gram_cli import api, setup_runtime  # noqa: E402
from gram_pyro import GRAM, prior_rollouts  # noqa: E402
from gram_pyro.inference import CHUNK_ELEMENTS, rows_per_chunk  # noqa: E402
from gram_pyro.runconfig import build_run_config  # noqa: E402


def model_config(task_name: str, preset: str):
    """The model ``gram train --task TASK --preset PRESET`` builds (with the task's pair structure where asked)."""
    task = tasks.get_task(task_name)
    return api.with_pair_structure(build_run_config(task_name, api.task_sizes(task), preset), task).model


def time_budgets(args, task: str, budgets: list[int]) -> list[dict]:
    """Median seconds of the same rollouts at each budget (alternating order over rounds)."""
    cfg = model_config(task, args.preset)
    gram = GRAM(cfg).eval()
    x = tokens(cfg, args.inputs, cfg.seq_len, low=1)
    prior_rollouts(gram, x[:2], args.width, depth=1)  # warm-up: first-call allocations
    seconds = {b: [] for b in budgets}
    for r in range(args.rounds):
        for b in budgets if r % 2 == 0 else budgets[::-1]:
            t0 = time.perf_counter()
            prior_rollouts(gram, x, args.width, depth=args.depth, chunk_size=rows_per_chunk(cfg, b))
            seconds[b].append(time.perf_counter() - t0)
    base = statistics.median(seconds[CHUNK_ELEMENTS]) if CHUNK_ELEMENTS in seconds else None
    rows = []
    for b in budgets:
        med = statistics.median(seconds[b])
        rows.append({"task": task, "budget": f"2^{b.bit_length() - 1}" + (" (default)" if b == CHUNK_ELEMENTS else ""),
                     "rows_per_chunk": rows_per_chunk(cfg, b), "widest_mib": b * 4 / 2**20,
                     "seconds": med, "ratio": med / base if base else float("nan"),
                     "rounds": " ".join(f"{s:.2f}" for s in seconds[b])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="nqueens-10,nqueens-8")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--budgets", default="19,20,21,22,23", help="log2 of the element budgets compared")
    ap.add_argument("--inputs", type=int, default=50)
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    try:
        budgets = [2 ** int(k) for k in args.budgets.split(",")]
    except ValueError:
        ap.error(f"--budgets expects comma-separated integers (log2 of element budgets), got {args.budgets!r}")
    if not all(2**10 <= b <= 2**30 for b in budgets) or min(args.inputs, args.width, args.depth, args.rounds) < 1:
        ap.error("budgets must lie in 2^10..2^30, and inputs, width, depth and rounds must be at least 1")
    known = tasks.list_tasks()
    unknown = [t for t in args.tasks.split(",") if t not in known]
    if unknown:
        ap.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(known)}")
    setup_runtime()
    rows = [row for task in args.tasks.split(",") for row in time_budgets(args, task, budgets)]
    table = markdown_table(rows, ["task", "budget", "rows_per_chunk", "widest_mib", "seconds", "ratio", "rounds"])
    print(table)
    if args.write:
        append_results(f"Rollout chunk budgets, preset `{args.preset}`", table,
                       note=f"{args.inputs} inputs × N = {args.width} × depth {args.depth}; medians of {args.rounds} "
                            "alternating rounds; ratio = seconds / the default budget's")


if __name__ == "__main__":
    main()
