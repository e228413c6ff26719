"""Time one training supervision step (one optimiser update) for CPU presets, as ratios in one run.

Measures, on synthetic tokens, the median wall time of one supervision step (one ``Trainer`` update) for GRAM
and the deterministic baseline, and GRAM with the shared recursion switched off (model and guide each
computing f_L/f_H), so the saving of the shared path is a ratio from the same run.

    python bench/step_time.py [--preset cpu] [--batch 64] [--seq-len 64] [--repeats 30] [--write]

``--write`` appends the table to docs/results.md with the command, machine and date.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results  # noqa: E402

from gram_pyro import GRAM, preset  # noqa: E402
from gram_cli import setup_runtime  # noqa: E402
from gram_pyro.config import OptimConfig  # noqa: E402
from gram_pyro.trainer import Trainer  # noqa: E402


def time_steps(gram, x, y, repeats, shared=True) -> float:
    """Median milliseconds per supervision step (one optimiser update), after one warm-up batch."""
    if not shared:  # make shared_recursion a no-op: model and guide recompute the recursion
        gram.shared_recursion = contextlib.nullcontext
    trainer = Trainer(gram, x, y, OptimConfig(batch_size=len(x)))
    trainer.run(repeats + 1)
    per_step = [r["seconds"] / gram.cfg.N_sup for r in trainer.batch_records[1:]]
    return statistics.median(per_step) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=10, help="batches of N_sup steps timed")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    setup_runtime()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, args.vocab, (args.batch, args.seq_len), generator=g)
    y = torch.randint(2, args.vocab, (args.batch, args.seq_len), generator=g)
    rows = []
    for label, mode, shared in [("GRAM", "gram", True), ("GRAM, recursion recomputed", "gram", False),
                                ("deterministic", "deterministic", True)]:
        torch.manual_seed(0)
        gram = GRAM(preset(args.preset, vocab_size=args.vocab, seq_len=args.seq_len, mode=mode))
        ms = time_steps(gram, x, y, args.repeats, shared)
        rows.append((label, gram.parameter_count(), ms))
    base = rows[0][2]
    cfg = preset(args.preset, vocab_size=args.vocab, seq_len=args.seq_len)
    lines = [
        f"| model | params | ms / supervision step (median of {args.repeats} batches) | ratio to GRAM |",
        "|---|---|---|---|",
        *[f"| {label} | {p:,} | {ms:.1f} | {ms / base:.2f} |" for label, p, ms in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        append_results(f"Supervision-step time, preset `{args.preset}` (D={cfg.D}, K={cfg.K}, T={cfg.T}), "
                       f"batch {args.batch}, sequence {args.seq_len}", table)

if __name__ == "__main__":
    main()
