"""Four training-step variants of issue 18, item 2, measured against the current step in one run.

    python bench/step_variants.py [--preset cpu] [--batch 64] [--seq-len 64] [--repeats 20]
        [--variants heads,kl,norm,compile] [--write]

1. ``torch.compile`` of the deterministic transition's networks (f_L and f_H, ``nn.Module.compile``, static
   shapes, an empty inductor cache): seconds of the first compiled update (what the budget pays once per shape,
   and again for every new shape: rollout chunks, prior-carry rows) and the median update time against the eager step, interleaved.
2. Fused μ/σ heads: one ``[D, 4·D_h]`` matmul for the w13 layers of both SwiGLU heads of a ``LocScaleHead``
   (the same weights concatenated, so the same values) against the two separate heads, forward + backward on
   ``batch × S`` rows.  Values are checked equal first.
3. The balanced KL as it was computed before: two KL evaluations on stop-gradient copies, α·KL(sg q ‖ p) +
   (1−α)·KL(q ‖ sg p), against the current one evaluation on gradient-scaled copies (``elbo.balanced_kl``).
4. The blocks' post-norm residual ``rms(x + r)`` as one autograd node with a written-out backward (the sum
   normalised in place; fewer elementwise passes than ``F.rms_norm``'s pow/mean/rsqrt/mul kernels) against
   the current ``layers.rms_norm(x + r)``.  Values are checked equal first.
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
from torch.autograd.function import once_differentiable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_results, markdown_table  # noqa: E402
from speed import data, model_config  # noqa: E402

from gram_cli import setup_runtime  # noqa: E402
from gram_pyro import GRAM, elbo, layers  # noqa: E402
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


def _patched_ratio(args, label: str, patch) -> dict:
    """The current update against the same update under ``patch`` (a ``mock.patch``), after checking equal losses."""
    current, other = _update_fn(args, False), _update_fn(args, False)

    def variant(i: int) -> float:
        with patch:
            return other(i)

    a, b = current(0), variant(0)
    if abs(a - b) > 1e-4 * max(1.0, abs(a)):
        raise SystemExit(f"{label}: the losses differ: {a} (current) vs {b}")
    med = _interleaved({"current": current, "variant": variant}, args.repeats)
    return {"variant": label, "current_ms": med["current"], "variant_ms": med["variant"],
            "ratio": med["variant"] / med["current"], "once_s": 0.0}


def kl_ratio(args) -> dict:
    return _patched_ratio(args, "balanced KL as two stop-gradient KLs (earlier)",
                          mock.patch.object(elbo, "balanced_kl", _two_stop_gradient_kls))


class _AddRMSNorm(torch.autograd.Function):
    """y = s · rstd with s = x + r, rstd = 1 / sqrt(mean(s²) + eps); ∂L/∂s = rstd · (g − y · mean(g · y))."""

    @staticmethod
    def forward(ctx, x, r, eps):
        s = x + r
        rstd = torch.rsqrt(s.pow(2).mean(-1, keepdim=True).add_(eps))
        y = s.mul_(rstd)
        ctx.save_for_backward(y, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        y, rstd = ctx.saved_tensors
        grad = torch.addcmul(g, y, (g * y).mean(-1, keepdim=True), value=-1).mul_(rstd)
        return grad, grad, None


def _fused_norm_block(block: layers.Block, x: torch.Tensor, attn_bias=None) -> torch.Tensor:
    """``layers.Block.forward`` with each ``rms_norm(x + r)`` as one :class:`_AddRMSNorm` node."""
    x = _AddRMSNorm.apply(x, block.mixer(x) if attn_bias is None else block.mixer(x, attn_bias), 1e-5)
    return _AddRMSNorm.apply(x, block.mlp(x), 1e-5)


def norm_ratio(args) -> dict:
    return _patched_ratio(args, "post-norm residual rms(x + r) as one autograd node",
                          mock.patch.object(layers.Block, "forward", _fused_norm_block))


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
    ap.add_argument("--variants", default="heads,kl,norm,compile", help="which of heads, kl, norm, compile to run")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    variants = {"heads": fused_heads_ratio, "kl": kl_ratio, "norm": norm_ratio, "compile": compile_ratio}
    chosen = args.variants.split(",")
    if unknown := sorted(set(chosen) - set(variants)):
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(variants)}")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="gram-inductor-")  # a cold compile, as a run pays
    setup_runtime()
    rows = [variants[name](args) for name in chosen]
    table = markdown_table(rows, ["variant", "current_ms", "variant_ms", "ratio", "once_s"])
    print(table)
    if args.write:
        append_results(f"Training-step variants (issue 18, item 2), preset `{args.preset}`, batch {args.batch}, "
                       f"sequence {args.seq_len}", table,
                       note=f"medians of {args.repeats} interleaved repeats; ratio = variant / current; once_s = "
                            f"seconds of the first compiled update (compilation)")


if __name__ == "__main__":
    main()
