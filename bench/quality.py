"""GRAM vs the deterministic (TRM-style) baseline at an equal training budget (gram-paper.md §6.2).

    python bench/quality.py --task nqueens-8 --preset cpu --cpu-minutes 20 [--set section.key=value ...]
        [--gram-set section.key=value ...] [--data PATH] [--widths 1,5,20] [--depths 4,16] [--temperatures 1,0.5]
        [--jobs 2] [--models gram,deterministic] [--out DIR [--reuse]] [--write]

Both models share the architecture, data, augmentation and budget (``--set`` applies to both, ``--gram-set``
to GRAM only, e.g. its β). The budget is CPU time spent on training updates (all threads; periodic evaluations
are not charged), so other load on the machine does not shrink one model's share. ``--jobs 2`` trains the two
models in parallel processes with one thread each. Each trains until the budget is spent (at a batch
boundary), then is evaluated on the held-out split by prior rollouts (y never seen): task accuracy, coverage
and distinct valid answers at each width N (and test-time depth, in supervision steps), and majority-vote
accuracy. GRAM is also sampled at each ``--temperatures`` τ (prior noise scaled around its mean,
``gram_pyro.inference.temperature``; not in the paper); the deterministic model has no noise to scale. GRAM's
guide (posterior) accuracy on the same inputs is reported next to its prior accuracy — the
gap diagnoses β. The learning curve is the run's eval records. ``--reuse`` evaluates the runs already in
``--out`` again (e.g. at other depths); a model whose run is missing there is trained. ``--models gram`` trains
and evaluates GRAM only (an ablation beside a baseline measured before, at the same budget).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402

from gram_analysis.run import targets  # noqa: E402
from gram_pyro.model import guided_traces  # noqa: E402
from gram_cli import api, setup_runtime  # noqa: E402


@torch.no_grad()
def guide_accuracy(run: api.Run, max_inputs: int, chunk: int = 256) -> float:
    """Validity of the guide's reconstructions (q sees one target per input) on held-out inputs."""
    split = run.splits["test"]
    inputs, ys = split.inputs[:max_inputs], targets(split)[:max_inputs]
    last = f"y_hat_{run.config.model.N_sup - 1}"
    ok = []
    for i in range(0, len(inputs), chunk):
        x, y = torch.as_tensor(inputs[i : i + chunk]), torch.as_tensor(ys[i : i + chunk])
        y_hat = guided_traces(run.gram.model, run.gram.guide, x, y)[0].nodes[last]["value"]
        ok += list(run.task.validity(x.numpy(), y_hat[:, None].numpy())[:, 0])
    return float(np.mean(ok))


def train_and_evaluate(args, mode: str, out: Path) -> tuple[list[dict], list[dict], int, bool]:
    """Train one model to the CPU budget (or, with --reuse, load its finished run), then evaluate it; returns
    (table rows, learning curve, test inputs, whether the run was reused)."""
    setup_runtime()
    if args.jobs > 1:  # one thread per process: the processes share the cores
        torch.set_num_threads(1)
    sets = ["train.batches=1000000", "train.checkpoint_every=0", *args.set]
    sets += args.gram_set if mode == "gram" else []
    reused = args.reuse and (out / mode / "checkpoint.pt").is_file()
    if reused:  # evaluate a finished run again
        run = api.load_run(out / mode, data_path=args.data)
    else:
        run = api.fit(args.task, out / mode, args.preset, sets, mode, data_path=args.data, progress=False,
                      max_cpu_seconds=args.cpu_minutes * 60)
    train_records = [r for r in run.history if r["kind"] == "train"]
    batches = max(r["batch"] for r in train_records) + 1
    minutes = sum(r["cpu_seconds"] for r in train_records) / 60
    taus = args.tau_list if mode == "gram" else (1.0,)
    evals = [{**e, "tau": tau} for tau in taus
             for e in api.evaluate(run, widths=args.width_list, depths=args.depth_list, max_inputs=args.max_inputs,
                                   tau=tau)]
    guide = guide_accuracy(run, args.max_inputs or 200) if mode == "gram" else float("nan")
    rows = [{"model": mode, "tau": e["tau"], "depth": e["depth"], "N": e["width"], "accuracy": e["accuracy"],
             "vote_acc": e["vote_acc"], "lprm_acc": e["lprm_acc"], "coverage": e.get("coverage", float("nan")),
             "coverage_max": e.get("coverage_max", float("nan")), "distinct_valid": e["distinct_valid"],
             "guide_acc": guide, "batches": batches, "cpu_minutes": minutes,
             **({"conflicts": e["conflict_edges_total"], "vote_conflicts": e["vote_conflicts"],
                 "lprm_conflicts": e["lprm_conflicts"]} if "conflict_edges_total" in e else {})} for e in evals]
    T = run.config.model.T
    curves = [{"model": mode, "batch": e["batch"], "prior_acc": e.get("prior_acc"),
               "prior_coverage": e.get("prior_coverage", float("nan")), "elbo_full": e["elbo_full"],
               "kl_step_1": sum(e["kl_per_transition"][:T]) if e.get("kl_per_transition") else float("nan"),
               "kl_later": sum(e["kl_per_transition"][T:]) if e.get("kl_per_transition") else float("nan")}
              for e in run.history if e["kind"] == "eval"]
    return rows, curves, len(run.splits["test"].inputs[: args.max_inputs]), reused


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--cpu-minutes", type=float, default=10.0, help="training budget per model, CPU minutes")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--gram-set", action="append", default=[])
    ap.add_argument("--data")
    ap.add_argument("--widths", default="1,5,20")
    ap.add_argument("--depths", help="test-time depths in supervision steps, e.g. 4,16 (default: N_sup)")
    ap.add_argument("--temperatures", default="1", help="GRAM sampling temperatures, e.g. 1,0.5")
    ap.add_argument("--max-inputs", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=1, help="train the two models in parallel processes (1 thread each)")
    ap.add_argument("--models", default="gram,deterministic", help="which of gram,deterministic to train and evaluate")
    ap.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate the runs already in --out (train only the missing ones)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    setup_runtime()
    args.width_list = tuple(int(w) for w in args.widths.split(","))
    args.depth_list = tuple(int(d) for d in args.depths.split(",")) if args.depths else None
    args.tau_list = tuple(float(t) for t in args.temperatures.split(","))
    out = Path(args.out or tempfile.mkdtemp(prefix="gram-quality-"))
    modes = tuple(m for m in ("gram", "deterministic") if m in args.models.split(","))
    if not modes:
        ap.error("--models must name gram and/or deterministic")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(train_and_evaluate, [args] * len(modes), modes, [out] * len(modes)))
    rows = [r for res in results for r in res[0]]
    curves = [c for res in results for c in res[1]]
    n_test = results[0][2]
    keys = ["model", "tau", "depth", "N", "accuracy", "vote_acc", "lprm_acc", "coverage", "coverage_max",
            "distinct_valid", "guide_acc", "batches", "cpu_minutes"]
    keys += ["conflicts", "vote_conflicts", "lprm_conflicts"] if "conflicts" in rows[0] else []
    table = markdown_table(rows, keys)
    curve = markdown_table(curves, ["model", "batch", "prior_acc", "prior_coverage", "elbo_full", "kl_step_1",
                                    "kl_later"])
    print(table + "\n\nlearning curve (periodic evaluations):\n" + curve)
    (out / "quality.json").write_text(json.dumps({"rows": rows, "curves": curves}, indent=2))
    if args.write:
        minutes = max(r["cpu_minutes"] for r in rows)
        reused = [m for m, res in zip(modes, results) if res[3]]
        again = "" if not reused else ", runs evaluated again" if len(reused) == len(modes) else f", {reused[0]} run reused"
        who = "GRAM vs deterministic" if len(modes) == 2 else f"{modes[0]} only"
        title = f"Quality: {args.task}, {who}, {minutes:.0f} CPU minutes of training each{again}"
        append_results(title,
                       table + "\n\nLearning curve (prior rollouts on held-out inputs during training):\n\n" + curve,
                       note=f"{n_test} held-out inputs; tau = sampling temperature; depth in supervision steps; "
                            f"accuracy = valid answers among all N samples; vote_acc / lprm_acc = accuracy of the "
                            f"answer selected by majority vote / by the LPRM value head; conflicts = conflict edges summed over "
                            f"inputs and all N samples, vote_conflicts / lprm_conflicts = those of the selected "
                            f"answer (one per input); coverage_max = the most N "
                            f"samples can cover (min(N, answers) / answers, averaged over inputs); guide_acc = "
                            f"validity of the guide's reconstruction, which sees a target (not available at test "
                            f"time); elbo_full (Eq. 13) and its KL, split into kl_step_1 (the first supervision "
                            f"step's transitions) and kl_later (all later ones), are nats per row on the first 64 "
                            f"training rows (the trainer's eval records).")


if __name__ == "__main__":
    main()
