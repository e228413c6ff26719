"""GRAM vs the deterministic (TRM-style) baseline at an equal wall-clock budget (gram-paper.md §6.2).

    python bench/quality.py --task nqueens-8 --preset cpu --cpu-minutes 20 [--set section.key=value ...]
        [--gram-set section.key=value ...] [--data PATH] [--widths 1,5,20] [--write]

Both models share the architecture, data, augmentation and budget (``--set`` applies to both, ``--gram-set``
to GRAM only, e.g. its β).  The budget is CPU time of the training process (all threads), so other load on
the machine does not shrink one model's share.  Each trains until the budget is spent (at a batch boundary),
then is evaluated
on the held-out split by prior rollouts (y never seen): task accuracy, coverage and distinct valid answers at
each width N, and majority-vote accuracy.  GRAM's guide (posterior) accuracy on the same inputs is reported
next to its prior accuracy — the gap diagnoses β.  The learning curve is the run's eval records.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pyro import poutine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402

from analysis.run import targets  # noqa: E402
from gram_pyro.cli import api, setup_runtime  # noqa: E402


@torch.no_grad()
def guide_accuracy(run: api.Run, max_inputs: int, chunk: int = 256) -> float:
    """Validity of the guide's reconstructions (q sees one target per input) on held-out inputs."""
    split = run.splits["test"]
    inputs, ys = split.inputs[:max_inputs], targets(split)[:max_inputs]
    last = f"y_hat_{run.config.model.N_sup - 1}"
    ok = []
    for i in range(0, len(inputs), chunk):
        x, y = torch.as_tensor(inputs[i : i + chunk]), torch.as_tensor(ys[i : i + chunk])
        guide = poutine.trace(run.gram.guide).get_trace(x, y)
        y_hat = poutine.trace(poutine.replay(run.gram.model, trace=guide)).get_trace(x, y).nodes[last]["value"]
        ok += [run.task.verify(a, b) for a, b in zip(x.numpy(), y_hat.numpy())]
    return float(np.mean(ok))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--cpu-minutes", type=float, default=10.0, help="training budget per model, CPU minutes")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--gram-set", action="append", default=[])
    ap.add_argument("--data")
    ap.add_argument("--widths", default="1,5,20")
    ap.add_argument("--max-inputs", type=int, default=None)
    ap.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    setup_runtime()
    widths = tuple(int(w) for w in args.widths.split(","))
    out = Path(args.out or tempfile.mkdtemp(prefix="gram-quality-"))
    rows, curves = [], []
    for mode in ("gram", "deterministic"):
        sets = ["train.batches=1000000", "train.checkpoint_every=0", *args.set]
        sets += args.gram_set if mode == "gram" else []
        t0 = time.process_time()
        run = api.fit(args.task, out / mode, args.preset, sets, mode, data_path=args.data, progress=False,
                      max_cpu_seconds=args.cpu_minutes * 60)
        seconds = time.process_time() - t0
        batches = max(r["batch"] for r in run.history if r["kind"] == "train") + 1
        evals = api.evaluate(run, widths=widths, max_inputs=args.max_inputs)
        guide = guide_accuracy(run, args.max_inputs or 200) if mode == "gram" else float("nan")
        for r in evals:
            rows.append({"model": mode, "N": r["width"], "accuracy": r["accuracy"], "vote_acc": r["vote_acc"],
                         "coverage": r.get("coverage", float("nan")), "distinct_valid": r["distinct_valid"],
                         "guide_acc": guide, "batches": batches, "cpu_minutes": seconds / 60,
                         **({"conflicts": r["conflict_edges_total"]} if "conflict_edges_total" in r else {})})
        curves += [{"model": mode, "batch": e["batch"], "prior_acc": e.get("prior_acc"),
                    "prior_coverage": e.get("prior_coverage", float("nan")), "elbo_full": e["elbo_full"]}
                   for e in run.history if e["kind"] == "eval"]
    keys = ["model", "N", "accuracy", "vote_acc", "coverage", "distinct_valid", "guide_acc", "batches", "cpu_minutes"]
    keys += ["conflicts"] if "conflicts" in rows[0] else []
    table = markdown_table(rows, keys)
    curve = markdown_table(curves, ["model", "batch", "prior_acc", "prior_coverage", "elbo_full"])
    print(table + "\n\nlearning curve (periodic evaluations):\n" + curve)
    (out / "quality.json").write_text(json.dumps({"rows": rows, "curves": curves}, indent=2))
    if args.write:
        n_test = len(run.splits["test"].inputs[: args.max_inputs])
        append_results(f"Quality: {args.task}, GRAM vs deterministic at {args.cpu_minutes:g} CPU minutes each",
                       table + "\n\nLearning curve (prior rollouts on held-out inputs during training):\n\n" + curve,
                       note=f"{n_test} held-out inputs; accuracy = valid answers among all N samples; vote_acc = "
                            f"accuracy of the majority-vote answer; guide_acc = validity of the guide's "
                            f"reconstruction, which sees a target (not available at test time).")


if __name__ == "__main__":
    main()
