"""Three training-step variants of issue 18, item 2, measured against the current step in one run.

    python bench/step_variants.py [--preset cpu] [--batch 64] [--seq-len 64] [--repeats 20] [--write]

1. ``torch.compile`` of the deterministic transition's networks (f_L and f_H, ``nn.Module.compile``, static
   shapes, an empty inductor cache): seconds of the first compiled update (what the budget pays once per shape,
   and again for every new shape: rollout chunks, prior-carry rows) and the median update time against the eager step, interleaved.
2. Fused μ/σ heads: one ``[D, 4·D_h]`` matmul for the w13 layers of both SwiGLU heads of a ``LocScaleHead``
   (the same weights concatenated, so the same values) against the two separate heads, forward + backward on
   ``batch × S`` rows.  Values are checked equal first.
3. The balanced KL as it was computed before: two KL evaluations on stop-gradient copies, α·KL(sg q ‖ p) +
   (1−α)·KL(q ‖ sg p), against the current one evaluation on gradient-scaled copies (``elbo.balanced_kl``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402
from speed import data, model_config  # noqa: E402

from gram_cli import setup_runtime  # noqa: E402
from gram_pyro import GRAM, elbo  # noqa: E402
from gram_pyro.config import OptimConfig  # noqa: E402
from gram_pyro.priors import LocScaleHead  # noqa: E402
from gram_pyro.update import BatchNoise, StepLoss, make_optimizer  # noqa: E402


def _update_fn(args, compiled: bool):
    """One supervision-step update of a fresh model (seed 0); ``compiled``: f_L and f_H compiled in place."""
    cfg = model_config(args)
    torch.manual_seed(0)
    gram = GRAM(cfg)
    if compiled:
        for stack in (gram.f_L, gram.f_H):
            if stack is not None:
                stack.compile(dynamic=False)
    step_loss, (opt, _) = StepLoss(gram, cfg.alpha), make_optimizer(gram, OptimConfig())
    x, y = data(args)

    def update(i: int) -> float:
        with BatchNoise(torch.Generator().manual_seed(i), len(x)):
            loss = step_loss(x, y, None, 0)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return update


def _interleaved(fns: dict, repeats: int) -> dict:
    """Median ms of each update function, interleaved; the first two rounds are warm-up."""
    times = {k: [] for k in fns}
    for i in range(1, repeats + 3):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(i)
            if i > 2:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def compile_ratio(args) -> dict:
    eager, compiled = _update_fn(args, False), _update_fn(args, True)
    t0 = time.perf_counter()
    first = compiled(0)
    compile_s = time.perf_counter() - t0
    if abs(first - eager(0)) > 1e-3 * max(1.0, abs(first)):
        raise SystemExit(f"compiled and eager losses differ: {first} vs {eager(0)}")
    med = _interleaved({"eager": eager, "compiled": compiled}, args.repeats)
    return {"variant": "torch.compile of f_L, f_H", "current_ms": med["eager"], "variant_ms": med["compiled"],
            "ratio": med["compiled"] / med["eager"], "once_s": compile_s}


def _two_stop_gradient_kls(q, p, value, alpha: float):
    """The balanced KL of gram-paper.md §2.4 as two KL evaluations on stop-gradient copies (the earlier code)."""
    return (alpha * elbo.kl_term(elbo.detach_params(q), p, value.detach())
            + (1 - alpha) * elbo.kl_term(q, elbo.detach_params(p), value))


def kl_ratio(args) -> dict:
    current, earlier = _update_fn(args, False), _update_fn(args, False)

    def two_kls(i: int) -> float:
        with mock.patch.object(elbo, "balanced_kl", _two_stop_gradient_kls):
            return earlier(i)

    a, b = current(0), two_kls(0)
    if abs(a - b) > 1e-4 * max(1.0, abs(a)):
        raise SystemExit(f"one-KL and two-KL losses differ: {a} vs {b}")
    med = _interleaved({"one": current, "two": two_kls}, args.repeats)
    return {"variant": "balanced KL as two stop-gradient KLs (earlier)", "current_ms": med["one"],
            "variant_ms": med["two"], "ratio": med["two"] / med["one"], "once_s": 0.0}


def _fused(head: LocScaleHead, v: torch.Tensor):
    c, Dh = head.cfg, head.mu.w2.in_features
    a1, b1, a2, b2 = F.linear(v, torch.cat([head.mu.w13.weight, head.sigma.w13.weight])).split(Dh, -1)
    loc = head.mu.w2(F.silu(a1) * b1)
    return loc, c.sigma_min + (c.sigma_max - c.sigma_min) * torch.sigmoid(head.sigma.w2(F.silu(a2) * b2))


def fused_heads_ratio(args) -> dict:
    cfg = model_config(args)
    torch.manual_seed(0)
    head = LocScaleHead(cfg)
    for m in (head.mu.w2, head.sigma.w2):  # non-zero output layers, so the comparison is not of zeros
        torch.nn.init.normal_(m.weight, std=0.1)
    v = torch.randn(args.batch, cfg.S, cfg.D, requires_grad=True)
    for a, b in zip(head(v), _fused(head, v)):
        torch.testing.assert_close(a, b)
    times = {"separate": [], "fused": []}
    for i in range(args.repeats + 2):
        for name, fn in (("separate", head), ("fused", lambda u: _fused(head, u))):
            t = time.perf_counter()
            loc, scale = fn(v)
            (loc.sum() + scale.sum()).backward()
            if i >= 2:
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"variant": "fused mu/sigma w13 (one LocScaleHead)", "current_ms": med["separate"],
            "variant_ms": med["fused"], "ratio": med["fused"] / med["separate"], "once_s": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="gram-inductor-")  # a cold compile, as a run pays
    setup_runtime()
    rows = [fused_heads_ratio(args), kl_ratio(args), compile_ratio(args)]
    table = markdown_table(rows, ["variant", "current_ms", "variant_ms", "ratio", "once_s"])
    print(table)
    if args.write:
        append_results(f"Training-step variants (issue 18, item 2), preset `{args.preset}`, batch {args.batch}, "
                       f"sequence {args.seq_len}", table,
                       note=f"medians of {args.repeats} interleaved repeats; ratio = variant / current; once_s = "
                            f"seconds of the first compiled update (compilation)")


if __name__ == "__main__":
    main()
