"""``gram demo``: GRAM and the deterministic baseline trained side by side, then compared (gram-paper.md §3.3, §5.6).

The main job shows the central claim on N-Queens 8×8 (the paper's protocol, docs/tasks.md): the two models are
trained at the same time in two processes (one thread each, so both cores work), with the same preset, data,
augmentation and CPU-time budget per model (``--minutes``; the deterministic model is about twice as fast per
batch, so it makes more updates).  Each then samples prior rollouts on held-out boards (y is never seen) and
reports accuracy, coverage and distinct valid answers at N = 1, 5, 20; the parent prints the table and writes
the HTML report.  ``--toy`` runs the same job on the permutation toy in seconds (the tests use it).

Runs are written to ``OUT/gram`` and ``OUT/deterministic`` (``gram eval`` and ``gram report`` work on them),
the report to ``OUT/report.html``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import resource
import time
from pathlib import Path

from tqdm import tqdm

import gram_tasks as tasks
from gram_pyro import files
from gram_cli import api, runfolder
from gram_pyro.runconfig import build_run_config

MODES = ("gram", "deterministic")
WIDTHS = (1, 5, 20)


def _check_fresh(folder: Path) -> None:
    """Refuse, before anything is removed, a run folder whose run files gram did not write (the run-folder rule,
    ``gram_cli.runfolder``): only a previous gram run (with its marker) is replaced by the demo."""
    files.output_folder(folder)
    present = [n for n in runfolder.RUN_FILES if os.path.lexists(folder / n)]
    if present and not os.path.lexists(folder / runfolder.MARKER):
        raise files.FileRuleError(f"{folder} holds {', '.join(present)} that gram did not write "
                                  f"(no {runfolder.MARKER}); choose another --out")


def _fresh(folder: Path) -> None:
    """Remove a previous demo run (checked by :func:`_check_fresh`) so the demo always starts from scratch."""
    for name in (*runfolder.RUN_FILES, runfolder.MARKER):
        (folder / name).unlink(missing_ok=True)


def _train_and_evaluate(mode: str, job: dict, out: mp.Queue) -> None:
    """One child process: train ``mode`` on one thread, then evaluate prior rollouts; report through ``out``."""
    from gram_cli import setup_runtime
    import torch

    setup_runtime()
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        def on_batch(rec):
            out.put(("batch", mode, rec["batch"] + 1, time.process_time() - c0, rec["loss"], rec["kl"],
                     rec["final_posterior_acc"]))

        run = api.fit(job["task"], job["folder"][mode], job["preset"], job["sets"], mode, progress=False,
                      on_batch=on_batch, max_cpu_seconds=job["cpu_seconds"])
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        out.put(("evaluating", mode))
        rows = api.evaluate(run, widths=WIDTHS, max_inputs=job["inputs"])
        out.put(("done", mode, rows, {"train_s": train_s, "train_cpu_s": train_cpu,
                                      "total_s": time.perf_counter() - t0, "total_cpu_s": time.process_time() - c0}))
    except Exception as err:  # noqa: BLE001 - reported by the parent as one line
        out.put(("error", mode, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"))


def _job(args) -> dict:
    """The two runs' settings: task, preset, overrides, CPU budget (None: the preset's batches) and inputs."""
    checks = (("--minutes", args.minutes), ("--inputs", args.inputs), ("--report-inputs", args.report_inputs))
    for name, value in checks:
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value:g}")
    out = Path(args.out)
    toy = args.toy
    task = args.task or ("toy-perm-4" if toy else "nqueens-8")
    preset = args.preset or ("cpu-tiny" if toy else "cpu")
    sets = ([] if toy else ["train.batches=100000", "train.eval_every=0", "train.eval_inputs=32",
                            "train.checkpoint_every=0"]) + list(args.set)
    minutes = None if toy and args.minutes is None else (args.minutes or 3.0)
    return {"task": task, "preset": preset, "sets": sets, "cpu_seconds": None if minutes is None else 60 * minutes,
            "inputs": args.inputs, "folder": {m: out / m for m in MODES}}


def _watch(procs: dict, messages: mp.Queue, job: dict, quiet: bool) -> dict:
    """Show one live bar per model until both children report; returns {mode: (rows, timings)}."""
    budget = job["cpu_seconds"]
    bars = {m: tqdm(total=None if budget is None else round(budget), position=i, desc=f"{m:<13}", leave=True,
                    unit="cpu-s" if budget else "batch", disable=quiet, dynamic_ncols=True)
            for i, m in enumerate(MODES)}
    results, last = {}, {}
    try:
        while len(results) < len(MODES):
            try:
                msg = messages.get(timeout=1.0)
            except queue_module.Empty:
                dead = [m for m, p in procs.items() if not p.is_alive() and m not in results]
                if dead:
                    code = procs[dead[0]].exitcode
                    raise ValueError(f"the {dead[0]} process stopped without a result (exit code {code})")
                continue
            kind, mode = msg[0], msg[1]
            bar = bars[mode]
            if kind == "batch":
                _, _, batch, cpu, loss, kl, acc = msg
                bar.update((round(min(cpu, budget)) if budget else batch) - bar.n)
                bar.set_postfix_str(f"batch {batch}  -ELBO surrogate {loss:.3f}  beta*KL {kl:.3f}  guide acc {acc:.2f}")
                last[mode] = (batch, loss, kl, acc)
            elif kind == "evaluating":
                bar.set_postfix_str(f"batch {last.get(mode, (0,))[0]}  evaluating prior rollouts ...")
            elif kind == "done":
                results[mode] = (msg[2], msg[3], last.get(mode))
            else:  # a one-line "gram: error: ..." from the CLI, as for every failure
                raise ValueError(f"{mode} run failed: {msg[2]}")
    finally:
        for bar in bars.values():
            bar.close()
    return results


def _print_table(results: dict, task: str, n_inputs: int) -> None:
    print(f"\nprior rollouts on {n_inputs} held-out inputs of {task} (the answer is never seen; depth = N_sup):")
    print(f"{'model':<15}{'N':>4}{'accuracy':>10}{'coverage':>10}{'distinct valid':>16}")
    for mode in MODES:
        for r in results[mode][0]:
            print(f"{mode:<15}{r['width']:>4}{r['accuracy']:>10.3f}{r.get('coverage', float('nan')):>10.3f}"
                  f"{r['distinct_valid']:>16.2f}")
    for mode in MODES:
        rows, t, final = results[mode]
        tail = "" if final is None else (f"; last batch -ELBO surrogate {final[1]:.3f} "
                                         f"(beta*KL {final[2]:.3f}), guide accuracy {final[3]:.2f}")
        print(f"{mode}: {0 if final is None else final[0]} batches, training {t['train_s']:.0f} s wall / "
              f"{t['train_cpu_s']:.0f} s CPU, with evaluation {t['total_s']:.0f} s / {t['total_cpu_s']:.0f} s{tail}")


def run_demo(args) -> int:
    """Train both models side by side, print the comparison table and write the HTML report."""
    from gram_analysis.report import build_report
    from gram_analysis.run import RunData

    t0, c0 = time.perf_counter(), time.process_time()
    job = _job(args)
    task = tasks.get_task(job["task"])
    build_run_config(job["task"], api.task_sizes(task), job["preset"], job["sets"])  # bad settings: fail now
    splits = api.load_splits(task, 0, verbose=not args.quiet)  # built once here, read from the cache by both runs
    n_inputs = len(splits["test"].inputs[: job["inputs"]])
    report = files.output_target(Path(args.out) / "report.html")  # every target is checked before any work
    for folder in job["folder"].values():
        _check_fresh(folder)
    for folder in job["folder"].values():
        _fresh(folder)
    budget = "the preset's batches" if job["cpu_seconds"] is None else f"{job['cpu_seconds'] / 60:g} CPU minutes each"
    print(f"training GRAM and the deterministic baseline side by side on {job['task']} (preset {job['preset']}, "
          f"{budget}) -> {args.out}", flush=True)
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    procs = {m: ctx.Process(target=_train_and_evaluate, args=(m, job, messages), daemon=True) for m in MODES}
    for p in procs.values():
        p.start()
    try:
        results = _watch(procs, messages, job, args.quiet)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
        messages.close()
        messages.join_thread()
    _print_table(results, job["task"], n_inputs)
    runs = [api.load_run(job["folder"][m]) for m in MODES]
    build_report([RunData(m, r.task, r.gram, r.splits["test"], r.history, r.config.train.seed)
                  for m, r in zip(MODES, runs)], report, widths=WIDTHS, max_inputs=args.report_inputs)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nreport: {report}\ntotal: {time.perf_counter() - t0:.0f} s wall, "
          f"{time.process_time() - c0 + usage.ru_utime + usage.ru_stime:.0f} s CPU (both processes and the report)")
    print(f"next: gram eval {job['folder']['gram']} --depth 4,16   |   gram solve {job['folder']['gram']} BOARD_FILE")
    return 0
