"""Where the Pyro step loses time against the hand-written step: the same operators, timed in situ (issue 18).

    python bench/step_gap.py [--preset cpu] [--batch 64] [--seq-len 64] [--repeats 5] [--rounds 4] [--top 12] [--write]

The two updates of ``bench/speed.py`` (our Trainer step and ``bench/handwritten.py``, same model, batch and
noise) run under ``torch.profiler`` in ``--rounds`` rounds of ``--repeats`` updates each, the order of the two
alternating between rounds (the first-profiled step of a round pays for warming caches).  Printed per update,
as means over all rounds: the operators whose self time differs most between the two steps (with their call
counts), and every matrix multiplication (``aten::mm``) by input shapes.  The two steps run the same matmul
kernels on the same shapes and strides (``bench/throughput.py``'s ``MatmulRecorder``), so a per-shape difference
is the cost of the context a kernel runs in, not of different work.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402
from speed import step_fns  # noqa: E402

from gram_cli import setup_runtime  # noqa: E402


def self_times(fn, repeats: int) -> tuple[dict, dict]:
    """({operator: (calls, self ms)}, {mm input shapes: self ms}), summed over ``repeats`` updates of ``fn``."""
    fn(0)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(repeats):
            fn(i)
    ops = {e.key: (e.count, e.self_cpu_time_total / 1e3) for e in prof.key_averages()}
    mm = {str(e.input_shapes): e.self_cpu_time_total / 1e3
          for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::mm"}
    return ops, mm


def gap(args) -> list[list[dict]]:
    """Rows of per-update self ms, Pyro against hand-written: by operator (with calls) and by mm shape."""
    steps = dict(zip(("pyro", "torch"), step_fns(args)))
    ops = {k: collections.defaultdict(lambda: [0, 0.0]) for k in steps}
    mm = {k: collections.defaultdict(float) for k in steps}
    for r in range(args.rounds):
        for name in (("pyro", "torch") if r % 2 == 0 else ("torch", "pyro")):
            o, m = self_times(steps[name], args.repeats)
            for key, (calls, ms) in o.items():
                ops[name][key][0] += calls
                ops[name][key][1] += ms
            for key, ms in m.items():
                mm[name][key] += ms
    n = args.rounds * args.repeats
    op_rows = [{"operator": k, "difference (ms)": (ops["pyro"][k][1] - ops["torch"][k][1]) / n,
                "calls, Pyro": ops["pyro"][k][0] // n, "calls, hand-written": ops["torch"][k][0] // n}
               for k in set(ops["pyro"]) | set(ops["torch"])]
    mm_rows = [{"aten::mm input shapes": k, "difference (ms)": (mm["pyro"][k] - mm["torch"][k]) / n,
                "Pyro (ms)": mm["pyro"][k] / n, "hand-written (ms)": mm["torch"][k] / n}
               for k in set(mm["pyro"]) | set(mm["torch"])]
    return [sorted(rows, key=lambda r: -r["difference (ms)"]) for rows in (op_rows, mm_rows)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5, help="updates profiled per round")
    ap.add_argument("--rounds", type=int, default=4, help="rounds, the order of the two steps alternating")
    ap.add_argument("--top", type=int, default=12, help="operators printed")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    setup_runtime()
    op_rows, mm_rows = gap(args)
    diff = sum(r["difference (ms)"] for r in op_rows)
    total = f"total self-time difference per update: {diff:.2f} ms (Pyro − hand-written)"
    table = (markdown_table(op_rows[: args.top], list(op_rows[0])) + "\n\n"
             + markdown_table(mm_rows, list(mm_rows[0])))
    print(total + "\n" + table)
    if args.write:
        append_results(f"Pyro step against the hand-written step in situ, preset `{args.preset}`, batch {args.batch}, "
                       f"sequence {args.seq_len}", table, note=total)


if __name__ == "__main__":
    main()
