"""Small grid over GRAM settings on one task, judged by prior rollouts (what exists at test time).

    python bench/sweep.py --task toy-perm-4 --preset cpu-tiny --batches 120 \
        --grid model.beta=0.1,0.3,1.0 --grid model.truncated_from=posterior,prior [--write]

Every combination trains for the same number of batches and is evaluated on the held-out split at width
20: prior accuracy, coverage, distinct valid answers, and the guide's accuracy (which sees a target).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402
from quality import guide_accuracy  # noqa: E402

from gram_cli import api, setup_runtime  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--batches", type=int, default=120)
    ap.add_argument("--grid", action="append", default=[], help="section.key=v1,v2,...")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    setup_runtime()
    axes = [(g.split("=", 1)[0], g.split("=", 1)[1].split(",")) for g in args.grid]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, combo in enumerate(itertools.product(*[values for _, values in axes])):
            sets = [f"{k}={v}" for (k, _), v in zip(axes, combo)]
            t0 = time.perf_counter()
            run = api.fit(args.task, Path(tmp) / str(i), args.preset,
                          [f"train.batches={args.batches}", "train.checkpoint_every=0", *args.set, *sets],
                          progress=False)
            r = api.evaluate(run, widths=(args.width,))[0]
            rows.append({**dict(zip([k for k, _ in axes], combo)), "prior_acc": r["accuracy"],
                         "coverage": r.get("coverage", float("nan")), "distinct_valid": r["distinct_valid"],
                         "guide_acc": guide_accuracy(run, 200), "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
    keys = [k for k, _ in axes] + ["prior_acc", "coverage", "distinct_valid", "guide_acc", "seconds"]
    table = markdown_table(rows, keys)
    print(table)
    if args.write:
        sets = f" ({', '.join(args.set)})" if args.set else ""
        append_results(f"Sweep: {args.task}, preset {args.preset}{sets}, {args.batches} batches, width {args.width}",
                       table, note="prior_acc/coverage/distinct_valid: prior rollouts on held-out inputs; "
                                   "guide_acc: the guide's reconstruction (sees a target); seconds: wall time "
                                   "(compare settings by batches when other work shares the machine).")


if __name__ == "__main__":
    main()
