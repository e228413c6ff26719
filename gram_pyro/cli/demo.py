"""``gram demo``: train GRAM and the deterministic baseline on a built-in task, then compare (§4.2).

Both runs use the same preset, data, augmentation and number of updates; they are written to
``OUT/gram`` and ``OUT/deterministic`` (so ``gram eval`` and ``gram report`` work on them afterwards).
The comparison uses prior rollouts on held-out inputs only: y is never seen at test time.
"""

from __future__ import annotations

import time
from pathlib import Path

from gram_pyro.cli import api

RUN_FILES = ("checkpoint.pt", "history.jsonl", "config.json")


def _fresh(folder: Path) -> None:
    """Remove a previous demo run's own files (nothing else) so the demo always starts from scratch."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)


def run_demo(args) -> int:
    out = Path(args.out)
    results, seconds = {}, {}
    for mode in ("gram", "deterministic"):
        folder = out / mode
        _fresh(folder)
        print(f"\n[{mode}] training {args.task} with preset {args.preset} -> {folder}")
        t0 = time.perf_counter()

        def log(rec, every=[None]):
            if rec["batch"] % 10 == 0:
                print(f"  batch {rec['batch']:4d}  -ELBO surrogate {rec['loss']:8.4f}  (nll {rec['nll']:.4f}, "
                      f"beta*KL {rec['kl']:.4f})  guide accuracy {rec['final_posterior_acc']:.2f}", flush=True)

        run = api.fit(args.task, folder, args.preset, args.set, mode, progress=not args.quiet, on_batch=log)
        seconds[mode] = time.perf_counter() - t0
        results[mode] = api.evaluate(run, widths=(1, 5, 20))
    n_inputs = len(run.splits["test"].inputs)
    print(f"\nprior rollouts on the {n_inputs} held-out inputs of {args.task} (the answer is never seen):")
    print(f"{'model':<15}{'width N':>8}{'accuracy':>10}{'coverage':>10}{'distinct valid':>16}")
    for mode, rows in results.items():
        for r in rows:
            print(f"{mode:<15}{r['width']:>8}{r['accuracy']:>10.3f}{r.get('coverage', float('nan')):>10.3f}"
                  f"{r['distinct_valid']:>16.2f}")
    print("\ntraining time: " + ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()))
    print(f"next: gram eval {out / 'gram'}   |   gram report {out / 'gram'} {out / 'deterministic'} --out report.html")
    return 0
