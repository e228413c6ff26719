"""The ``gram`` command line: the only module that wires the model core, the tasks and the analysis.

    gram tasks                 list tasks, presets and modes
    gram data TASK [--stats]   build a task's splits and print their counts as JSON
    gram demo                  train GRAM and the deterministic baseline on a built-in toy task,
                               printing the ELBO as it falls, then compare prior rollouts by width

Bad input never produces a traceback: a one-line ``gram: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pyro
import torch
from tqdm import tqdm

import tasks
from gram_pyro.config import MODES, PRESETS, preset
from gram_pyro.inference import prior_rollouts
from gram_pyro.model import GRAM
from gram_pyro.train import OptimConfig, fit


def setup_runtime(validate: bool = False) -> None:
    """Entry-point hygiene: flush denormals (8x slowdowns seen), threads = cores, and Pyro's
    validation off for production runs (tests keep it on; ``GRAM_VALIDATE=1`` turns it back on)."""
    pyro.enable_validation(validate or os.environ.get("GRAM_VALIDATE") == "1")
    torch.set_flush_denormal(True)
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def cmd_tasks(args) -> int:
    print("tasks:   " + ", ".join(tasks.list_tasks()))
    print("presets: " + ", ".join(PRESETS))
    print("modes:   " + "; ".join(f"{k} ({v})" for k, v in MODES.items()))
    return 0


def cmd_data(args) -> int:
    task = tasks.get_task(args.task)
    if args.stats:
        print(json.dumps(task.stats(seed=args.seed), indent=2, sort_keys=True))
    else:
        splits = task.build(seed=args.seed)
        print(json.dumps({k: {"rows": len(s), "inputs": len(s.inputs)} for k, s in splits.items()}, sort_keys=True))
    return 0


def _evaluate(gram, task, split, widths) -> dict[int, dict[str, float]]:
    x = torch.as_tensor(split.inputs)
    samples = prior_rollouts(gram, x, num_samples=max(widths)).final.numpy()
    return {n: task.metrics(split.inputs, samples[:, :n]) for n in widths}


def cmd_demo(args) -> int:
    task = tasks.get_task(args.task)
    splits = task.build(seed=args.seed)
    train, test = splits["train"], splits["test"]
    x, y = torch.as_tensor(train.x), torch.as_tensor(train.y)
    rng = np.random.default_rng(args.seed)

    def augment(xb, yb):
        xa, ya = task.augment(xb.numpy(), yb.numpy(), rng)
        return torch.as_tensor(xa), torch.as_tensor(ya)

    widths = [1, 5, 20]
    oc = OptimConfig(lr=args.lr, batch_size=args.batch_size, warmup=10)
    results = {}
    for mode in ("gram", "deterministic"):
        torch.manual_seed(args.seed)
        cfg = preset(args.preset, vocab_size=task.vocab_size, seq_len=task.seq_len, out_len=task.out_len,
                     mode=mode, beta=args.beta, seed=args.seed)
        gram = GRAM(cfg)
        print(f"\n[{mode}] {gram.parameter_count():,} parameters, {args.batches} batches x N_sup={cfg.N_sup} updates")
        bar = tqdm(total=args.batches, desc=mode, file=sys.stderr, disable=args.quiet, leave=False)

        def log(rec, bar=bar):
            bar.update(1)
            if rec["batch"] % max(1, args.batches // 10) == 0 or rec["batch"] == args.batches - 1:
                tqdm.write(f"  batch {rec['batch']:4d}  -ELBO surrogate {rec['loss']:8.4f}  "
                           f"(nll {rec['nll']:.4f}, beta*KL {rec['kl']:.4f})  posterior acc {rec['final_posterior_acc']:.2f}")

        fit(gram, x, y, args.batches, oc, augment=augment, on_log=log, seed=args.seed)
        bar.close()
        results[mode] = _evaluate(gram, task, test, widths)
    print(f"\nprior rollouts on the {len(test.inputs)} held-out inputs of {task.name} (y never seen):")
    print(f"{'model':<14}{'width N':>8}{'accuracy':>10}{'coverage':>10}{'distinct valid':>16}")
    for mode, by_width in results.items():
        for n, m in by_width.items():
            print(f"{mode:<14}{n:>8}{m['accuracy']:>10.3f}{m.get('coverage', float('nan')):>10.3f}{m['distinct_valid']:>16.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gram", description="GRAM (arXiv 2605.19376) as a Pyro program")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list tasks, presets and modes").set_defaults(func=cmd_tasks)
    d = sub.add_parser("data", help="build a task's splits; --stats prints counts as JSON")
    d.add_argument("task")
    d.add_argument("--stats", action="store_true")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data)
    m = sub.add_parser("demo", help="train GRAM and the deterministic baseline on a toy task and compare")
    m.add_argument("--task", default="toy-perm-4")
    m.add_argument("--preset", default="cpu-tiny", choices=sorted(PRESETS))
    m.add_argument("--batches", type=int, default=80)
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--lr", type=float, default=3e-3)
    m.add_argument("--beta", type=float, default=0.1)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_runtime()
    try:
        return args.func(args)
    except (ValueError, OSError) as err:  # TaskInputError is a ValueError
        print(f"gram: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gram: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
