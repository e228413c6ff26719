"""The ``gram`` command line (see docs/usage.md).

    gram tasks                                  tasks, run presets and modes
    gram data TASK [--stats]                    build (and cache) a task's splits; --stats prints counts as JSON
    gram train --task T --out RUN [--preset P] [--model NAME] [--set section.key=value ...] [--resume]
    gram eval RUN [--width 1,5,20] [--depth 16,32] [--halting] [--json]
    gram solve RUN INPUT [--width N]            distinct valid answers for your own puzzle, board or graph file
    gram generate RUN --num N                   unconditional samples with validity
    gram demo [--toy]                           the README's main job: GRAM vs the deterministic baseline
    gram report RUN [RUN ...] --out report.html

Bad input never produces a traceback: a one-line ``gram: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

try:  # Ctrl-C while torch loads (seconds): one line and exit code 130, like an interrupt in main()
    import pyro
    import torch

    import gram_tasks as tasks
    from gram_pyro import files, validation
    from gram_pyro.checkpoint import atomic_write_text
    from gram_pyro.baselines import MODELS
    from gram_pyro.config import MODES
    from gram_pyro.runconfig import list_presets
except KeyboardInterrupt:
    sys.stderr.write("gram: interrupted\n")
    raise SystemExit(130) from None


def setup_runtime(validate: bool = False) -> None:
    """Entry-point hygiene: flush denormals (8x slowdowns seen), threads = cores (or $OMP_NUM_THREADS), freed
    tensors kept in the heap (:func:`keep_freed_memory`), Pyro's validation off for production runs (tests keep it
    on; ``GRAM_VALIDATE=1`` turns it back on)."""
    pyro.enable_validation(validate or os.environ.get("GRAM_VALIDATE") == "1")
    keep_freed_memory()
    torch.set_flush_denormal(True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = os.environ.get("OMP_NUM_THREADS", "")
    torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else max(1, cores))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(mmap_mib: int = 64, trim_mib: int = 128) -> bool:
    """Serve tensors below ``mmap_mib`` MiB from the heap and keep up to ``trim_mib`` MiB of freed heap (glibc only).

    By default glibc maps every block above its mmap threshold afresh and unmaps it when freed, and that threshold
    adapts only to the largest block freed so far.  Rollouts and training allocate and free activations of a few
    MiB per transition, so the kernel may zero new pages every step: system time and a higher peak RSS (issue 18;
    ``bench/throughput.py`` measures both ways in one run; docs/results.md, where the gain varies from run to run).  Left alone with ``GRAM_KEEP_FREED_MEMORY=0``, where
    the user tuned malloc (``MALLOC_*_`` or ``GLIBC_TUNABLES`` in the environment), or where the C library is not
    glibc.  Returns whether it applied.
    """
    if os.environ.get("GRAM_KEEP_FREED_MEMORY") == "0" or any(
            k.startswith("MALLOC_") and k.endswith("_") or k == "GLIBC_TUNABLES" for k in os.environ):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        import ctypes

        libc = ctypes.CDLL(None)
        return (libc.mallopt(_M_MMAP_THRESHOLD, mmap_mib << 20) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, trim_mib << 20) == 1)
    except (AttributeError, OSError, TypeError, ValueError):  # no confstr name, no libc symbol
        return False


def _sampling_options(p: argparse.ArgumentParser) -> None:
    """--device, --seed and --temperature of the commands that draw prior samples (eval, solve, generate)."""
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--seed", type=_natural, default=0, help="sampling seed (same seed, same numbers)")
    p.add_argument("--temperature", type=_temperature, default=1.0, help=TEMPERATURE_HELP)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``gram: error: ...`` line (exit code 2) like every other error."""

    def error(self, message: str):
        self.exit(2, f"gram: error: {message.splitlines()[0]} (see {self.prog} --help)\n")


_INTEGER = re.compile(r"\s*-?[0-9]{1,30}\s*")  # ASCII digits only: int() would also take "１", "1_0", "+1"


def _integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(text)


def _ints(text: str) -> list[int]:
    if not all(_INTEGER.fullmatch(v) for v in text.split(",") if v.strip()):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _natural(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integer, got {value}")
    return value


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


TEMPERATURE_HELP = "scale of the prior noise around its mean (1: as trained; < 1 favours validity over diversity)"


def seed_sampling(seed: int) -> None:
    """Seed torch, pyro and numpy so that eval/solve/generate print the same numbers for the same command."""
    pyro.set_rng_seed(seed)


def cmd_tasks(args) -> int:
    print("tasks:   " + ", ".join(tasks.list_tasks()))
    print("presets: " + ", ".join(list_presets()) + "  (gram_pyro/configs/*.yaml, or a path to your own)")
    print("modes:   " + "; ".join(f"{k} ({v})" for k, v in MODES.items()))
    print("models:  " + ", ".join(MODELS) + "  (gram train --model NAME; docs/baselines.md)")
    return 0


def cmd_data(args) -> int:
    from gram_cli.api import load_splits

    task = tasks.get_task(args.task)
    if args.stats:
        print(json.dumps(task.stats(seed=args.seed), indent=2, sort_keys=True))
        return 0
    splits = load_splits(task, args.seed, args.data, verbose=True)
    print(json.dumps({k: {"rows": len(s), "inputs": len(s.inputs)} for k, s in splits.items()}, sort_keys=True))
    return 0


def cmd_train(args) -> int:
    from gram_cli import api
    from gram_pyro.distributed import shutdown

    sets = MODELS[args.model] + args.set + ([f"train.device={args.device}"] if args.device else [])
    try:
        run = api.fit(args.task, args.out, args.preset, sets, "deterministic" if args.deterministic else None,
                      args.resume, args.data, progress=not args.quiet)
    except BaseException:
        shutdown()  # no barrier: the other processes may be inside a collective that will never complete
        raise
    shutdown(barrier=True)
    evals = [r for r in run.history if r.get("kind") == "eval"]
    if evals:
        last = evals[-1]
        print(f"{run.path}: {len(run.history)} log records; last evaluation (batch {last['batch']}): "
              f"prior accuracy {last.get('prior_acc', float('nan')):.3f}, "
              f"coverage {last.get('prior_coverage', float('nan')):.3f}, full ELBO {last['elbo_full']:.3f}")
    return 0


def print_table(rows: list[dict], keys: list[str]) -> None:
    print("".join(f"{k:>16}" for k in keys))
    for r in rows:
        print("".join(f"{r[k]:>16.4f}" if isinstance(r.get(k), float) else f"{str(r.get(k, '-')):>16}" for k in keys))


def cmd_eval(args) -> int:
    from gram_cli import api

    run = api.load_run(args.run, args.data, args.device)
    seed_sampling(args.seed)
    rows = api.evaluate(run, args.width, args.depth, args.halting, args.split, args.max_inputs, progress=not args.json,
                        tau=args.temperature)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        keys = ["depth", "width"] + [k for k in rows[0] if k not in ("depth", "width")]
        m = run.config.model
        n_inputs = len(run.splits[args.split].inputs[:args.max_inputs])
        print(f"{run.path} ({m.mode if m.family == 'gram' else m.family}, {run.task.name}), {n_inputs} "
              f"{args.split} inputs, prior rollouts at temperature {args.temperature:g}:")
        print_table(rows, keys)
    return 0


def cmd_solve(args) -> int:
    from gram_cli import api

    run = api.load_run(args.run, device=args.device)
    seed_sampling(args.seed)
    from gram_cli import arc

    if arc.is_arc(run.task):  # an ARC task file: top-2 voted test outputs, drawn in colour
        out = arc.solve(run, args.input, args.width, args.depth, args.temperature, api.sample)
        return arc.print_solution(out, args.json)
    out = api.solve(run, api.read_user_input(args.input, run.task), args.width, args.depth, args.temperature)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    total = out["total_valid_answers"]
    print(f"{len(out['solutions'])} distinct valid answers from {args.width} trajectories"
          f"{'' if total is None else f' (of {total} that exist)'}; {out['invalid']} invalid")
    for i, s in enumerate(out["solutions"], 1):
        print(f"\n#{i} found by {s['count']} trajectories:\n{s['answer']}")
    return 0


def cmd_generate(args) -> int:
    from gram_cli import api

    target = files.output_target(args.out) if args.out else None  # before any work
    run = api.load_run(args.run, device=args.device)
    seed_sampling(args.seed)
    blank = run.splits["test"].inputs[0]
    draws = api.sample(run, blank, args.num, args.depth, args.temperature)[0]
    valid = run.task.validity(blank[None], draws[None])[0].tolist()
    summary = {"samples": len(draws), "valid": sum(valid), "validity": sum(valid) / len(draws),
               "distinct_valid": int(run.task.distinct_valid(draws[None], [valid])[0])}
    if args.out:
        atomic_write_text(target, "\n".join(json.dumps({"answer": y.tolist(), "valid": v}) for y, v in zip(draws, valid)) + "\n")
    if args.json:
        print(json.dumps(summary))
        return 0
    for y, ok in list(zip(draws, valid))[: args.show]:
        print(f"{'valid' if ok else 'INVALID'}:\n{run.task.decode_output(y)}\n")
    print(json.dumps(summary))
    return 0


def cmd_demo(args) -> int:
    from gram_cli.demo import run_demo

    return run_demo(args)


def cmd_report(args) -> int:
    from gram_cli import api
    from gram_analysis.report import build_report
    from gram_analysis.run import RunData

    out = files.output_target(args.out)  # every target is checked before any work (28 figures, tables, data)
    for folder in (out.parent / f"{out.stem}_figures", out.parent / f"{out.stem}_data"):
        files.output_folder(folder)
    runs = [api.load_run(p) for p in args.runs]
    for r in runs:
        n = min(args.max_inputs, len(r.splits["test"].inputs))
        validation.check_rollout(n, max(args.width), 2 * r.config.model.N_sup, r.config.model.L_out, "gram report")
    data = [RunData(r.path.name, r.task, r.gram, r.splits["test"], r.history, r.config.train.seed) for r in runs]
    written = build_report(data, args.out, widths=tuple(args.width), max_inputs=args.max_inputs)
    print(f"wrote {args.out} ({len(written.get('figures', {}))} figures)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="gram", description="GRAM (arXiv 2605.19376) as a Pyro program")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    sub.add_parser("tasks", help="list tasks, presets and modes").set_defaults(func=cmd_tasks)

    d = sub.add_parser("data", help="build and cache a task's splits; --stats prints counts as JSON")
    d.add_argument("task")
    d.add_argument("--stats", action="store_true")
    d.add_argument("--seed", type=_natural, default=0)
    d.add_argument("--data", help="a data file the task can read (e.g. a Sudoku list)")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a run (resumable)")
    t.add_argument("--task", required=True)
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--preset", default="cpu", help="a preset name or a YAML/JSON file")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    t.add_argument("--deterministic", action="store_true", help="the TRM-style baseline (mode=deterministic)")
    t.add_argument("--model", choices=list(MODELS), default="gram",
                   help="gram, its deterministic ablation, or a baseline system (docs/baselines.md)")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--data", help="a data file the task can read (e.g. a Sudoku list)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="shorthand for --set train.device=...")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="task metrics of prior rollouts for several widths and depths")
    e.add_argument("run")
    e.add_argument("--width", type=_ints, default=[1, 5, 20])
    e.add_argument("--depth", type=_ints, default=None)
    e.add_argument("--halting", action="store_true", help="stop each trajectory when sigma(q_halt) > 0.5")
    e.add_argument("--split", default="test")
    e.add_argument("--max-inputs", type=_integer, default=None, help="evaluate the first N held-out inputs (N >= 1)")
    e.add_argument("--data", help="the data file the run was trained with, if any")
    e.add_argument("--json", action="store_true")
    _sampling_options(e)
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("solve", help="answers for your own input (string, board file or DIMACS .col graph)")
    s.add_argument("run")
    s.add_argument("input")
    s.add_argument("--width", type=_integer, default=20)
    s.add_argument("--depth", type=_integer, default=None)
    s.add_argument("--json", action="store_true")
    _sampling_options(s)
    s.set_defaults(func=cmd_solve)

    g = sub.add_parser("generate", help="unconditional samples (blank-input tasks) with validity")
    g.add_argument("run")
    g.add_argument("--num", type=_integer, default=20)
    g.add_argument("--depth", type=_integer, default=None)
    g.add_argument("--show", type=_natural, default=3, help="samples to print")
    g.add_argument("--out", help="write every sample as JSON lines")
    g.add_argument("--json", action="store_true")
    _sampling_options(g)
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("demo", help="GRAM vs the deterministic baseline on N-Queens 8x8, trained side by side")
    m.add_argument("--toy", action="store_true", help="the permutation toy with preset cpu-tiny (seconds)")
    m.add_argument("--task", default=None, help="default nqueens-8 (toy-perm-4 with --toy)")
    m.add_argument("--preset", default=None, help="default cpu (cpu-tiny with --toy)")
    m.add_argument("--minutes", type=float, default=None,
                   help="CPU minutes of training per model (default 3; with --toy the preset's batches)")
    m.add_argument("--inputs", type=int, default=200, help="held-out inputs to evaluate (the first 200)")
    m.add_argument("--report-inputs", type=int, default=64, help="held-out inputs in the HTML report")
    m.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    m.add_argument("--out", default="runs/demo", help="folder for the two runs and report.html")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=cmd_demo)

    r = sub.add_parser("report", help="one self-contained HTML report of one or more runs")
    r.add_argument("runs", nargs="+")
    r.add_argument("--out", required=True)
    r.add_argument("--width", type=_ints, default=[1, 5, 20])
    r.add_argument("--max-inputs", type=_integer, default=200)
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command.  Exit codes: 0 done; 2 bad input, one ``gram: error: ...`` line (nothing half-written:
    every file is written atomically); 130 interrupted (Ctrl-C at any moment, one ``gram: interrupted`` line)."""
    try:
        args = build_parser().parse_args(argv)
        setup_runtime()
        return args.func(args)
    except (ValueError, OSError) as err:  # ConfigError, TaskInputError, CheckpointError are ValueErrors
        return _error(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except MemoryError:
        return _error("out of memory (see the limits in docs/reliability.md)")
    except KeyboardInterrupt:
        return _interrupted()


def _error(msg: str) -> int:
    print(f"gram: error: {msg}", file=sys.stderr)
    return 2


def _interrupted() -> int:
    print("gram: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
