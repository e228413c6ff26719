"""Where the time of one training update goes, and the fix of the top item (RoPE), measured in one run.

    python bench/profile_step.py [--preset cpu] [--batch 64] [--seq-len 64] [--repeats 10] [--write]

1. Share of one update's wall time per component, from ``torch.profiler`` record_function scopes:
   the recursion (f_L/f_H blocks), the prior heads, the posterior heads, the ELBO terms, backward.
2. Rotary embedding as implemented (one complex multiply on q and k together) vs the rotate-half form it
   replaced, attention forward + backward: median ms and ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402

from gram_pyro import GRAM, preset  # noqa: E402
from gram_cli import setup_runtime  # noqa: E402
from gram_pyro.update import BatchNoise, StepLoss  # noqa: E402

SCOPES = {"f_L": "recursion f_L", "f_H": "recursion f_H", "prior": "prior heads", "posterior": "posterior heads"}


def scoped(module: torch.nn.Module, label: str) -> None:
    """Wrap a submodule's forward in a profiler scope."""
    forward = module.forward

    def wrapped(*a, **k):
        with torch.profiler.record_function(label):
            return forward(*a, **k)

    module.forward = wrapped


def breakdown(args) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 6, (args.batch, args.seq_len), generator=g)
    y = torch.randint(2, 6, (args.batch, args.seq_len), generator=g)
    gram = GRAM(preset(args.preset, vocab_size=6, seq_len=args.seq_len))
    for attr, label in SCOPES.items():
        scoped(getattr(gram, attr), label)
    step = StepLoss(gram, gram.cfg.alpha)

    def update(i):
        with torch.profiler.record_function("forward (model + guide + ELBO)"):
            with BatchNoise(torch.Generator().manual_seed(i), len(x)):
                loss = step(x, y, None, 0)[0]
        with torch.profiler.record_function("backward"):
            loss.backward()

    for i in range(2):
        update(i)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(args.repeats):
            update(i)
    totals = {e.key: e.cpu_time_total / 1e3 / args.repeats for e in prof.key_averages() if e.key in
              [*SCOPES.values(), "forward (model + guide + ELBO)", "backward"]}
    whole = totals["forward (model + guide + ELBO)"] + totals["backward"]
    rows = [{"component": k, "ms per update": v, "share of update": v / whole} for k, v in totals.items()]
    return sorted(rows, key=lambda r: -r["ms per update"])


def rope_old(x, attn, S, H, hd, cos, sin):
    """The attention module's computation with the rotate-half RoPE it used before."""
    q, k, v = attn.qkv(x).view(-1, S, 3, H, hd).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))

    def rot(t):
        t1, t2 = t.chunk(2, -1)
        return t * cos + torch.cat([-t2, t1], -1) * sin

    o = F.scaled_dot_product_attention(rot(q), rot(k), v)
    return attn.out(o.transpose(1, 2).reshape(x.shape))


def rope_comparison(args) -> dict:
    gram = GRAM(preset(args.preset, vocab_size=6, seq_len=args.seq_len))
    attn = gram.f_H[0].mixer
    S, H, hd = args.seq_len, attn.n_heads, attn.head_dim
    ang = torch.outer(torch.arange(S, dtype=torch.float32), 1.0 / 1e4 ** (torch.arange(0, hd, 2) / hd))
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    x = torch.randn(args.batch, S, gram.cfg.D, requires_grad=True)
    fns = {"current": lambda: attn(x), "rotate-half": lambda: rope_old(x, attn, S, H, hd, cos, sin)}
    times = {k: [] for k in fns}
    for i in range(args.repeats * 3 + 2):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn().sum().backward()
            if i >= 2:
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"current_ms": med["current"], "rotate_half_ms": med["rotate-half"], "ratio": med["current"] / med["rotate-half"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    setup_runtime()
    rows = breakdown(args)
    rope = rope_comparison(args)
    table = markdown_table(rows, ["component", "ms per update", "share of update"])
    rope_table = markdown_table([rope], ["current_ms", "rotate_half_ms", "ratio"])
    print(table + "\n\nRoPE, attention forward + backward:\n" + rope_table)
    if args.write:
        append_results(f"Profile of one training update, preset `{args.preset}`, batch {args.batch}, "
                       f"sequence {args.seq_len}", table + "\n\nRoPE (the fixed top item), attention forward + "
                       "backward, current vs the rotate-half form it replaced:\n\n" + rope_table,
                       note="Scopes nest (f_L/f_H and the heads are inside forward); shares are of forward + backward.")


if __name__ == "__main__":
    main()
