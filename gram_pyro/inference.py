"""Test-time scaling: prior rollouts over width and depth, and trajectory selection (gram-paper.md §3).

:func:`prior_rollouts` draws N trajectories per input from the prior p_θ(τ | x) — the model never sees
y — with N folded into the batch and chunked to bound memory.  It steps one supervision step at a time
through ``GRAM.model`` (carry in, carry out), so depth may exceed the training N_sup and optional ACT
halting (σ(q_halt) > 0.5, §2.5) fixes each trajectory's answer at its halting step.  Selection is by
:func:`majority_vote` or by the LPRM value, :func:`lprm_best` (§3.2).

:class:`temperature` is a test-time knob that the paper does not use: a Pyro handler that scales the spread
of every latent ε draw around its prior mean by τ (τ = 1: the trained prior; τ = 0: the prior-mean path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from tqdm import tqdm


class temperature(Messenger):
    """Draw every continuous latent site (ε) with the spread around its mean scaled by ``tau``.

    A draw x becomes mean + τ·(x − mean) (an affine transform of the site's own distribution, so it works
    for any transition prior with a finite mean; a Normal keeps its loc and gets τ·σ).  τ = 0 replaces the
    site by a point mass at its mean.  Observed and discrete sites (an unobserved answer ``y_n``) are left
    alone.  Test time only: the trained model is unchanged, and τ < 1 trades diversity for validity
    (docs/results.md measures both).
    """

    def __init__(self, tau: float):
        super().__init__()
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {tau!r}")
        self.tau = float(tau)

    def _pyro_sample(self, msg) -> None:
        fn = msg["fn"]
        if self.tau == 1.0 or msg["is_observed"] or site_is_subsample(msg) or not fn.has_rsample:
            return
        if isinstance(fn, dist.Delta):  # no spread to scale (e.g. truncated_from="prior_mean")
            return
        mean = fn.mean
        if not bool(torch.isfinite(mean).all()):
            raise ValueError(f"temperature needs a finite mean at site {msg['name']!r} ({type(fn).__name__})")
        if self.tau == 0.0:
            msg["fn"] = dist.Delta(mean, event_dim=fn.event_dim)
        else:
            shift = dist.transforms.AffineTransform(mean * (1 - self.tau), self.tau, event_dim=fn.event_dim)
            msg["fn"] = dist.TransformedDistribution(fn, [shift])


@dataclass
class Rollouts:
    """Prior samples for B inputs and N trajectories each.

    ``answers`` [B, N, depth, L_out] decoded answer after every supervision step; ``halt_prob`` and
    ``value`` [B, N, depth]; ``halt_step`` [B, N] the step whose answer counts (the first with
    σ(q_halt) > 0.5 when halting, else the last); ``final`` [B, N, L_out] the answer at ``halt_step``;
    ``final_value`` [B, N] the LPRM value there.
    """

    answers: torch.Tensor
    halt_prob: torch.Tensor
    value: torch.Tensor
    halt_step: torch.Tensor
    final: torch.Tensor
    final_value: torch.Tensor


CHUNK_ELEMENTS = 2**21
"""Rollout chunk budget: float32 elements (8 MiB) in a chunk's widest activation (see :func:`rows_per_chunk`).
``bench/chunks.py`` times 2^19..2^23: 2^21 was 4–12 % faster than 2^22 on N-Queens 8 and 10, Sudoku 9×9 and
graph colouring (attention) at two threads, and on N-Queens at one (issue 18, docs/results.md, "Rollout chunk
budgets")."""


def rows_per_chunk(cfg, budget: int = CHUNK_ELEMENTS) -> int:
    """Trajectories per rollout chunk so that the widest activation of one transition fits ``budget`` elements.

    The widest tensors of a step are the SwiGLU gate input [rows, S, 2·D_h], the sequence mixer's
    [rows, D, 2·seq_hidden] or attention's q/k/v [rows, S, 3·D] and scores [rows, heads, S, S], and the
    decoder's logits [rows, L_out, V].  Chunks of 4,096 rows regardless of S and D made each of these 100 MB
    and more at N-Queens 10 (S = 100): every op then mapped fresh pages from the kernel, so an evaluation
    spent as long in system time as in user time and peaked above 2.5 GB (issue 18, docs/results.md).
    A budget in elements keeps each temporary small and reused, and bounds the peak whatever the width N
    and the number of inputs.
    """
    c = cfg
    mixer = c.S * (3 * c.D + c.n_heads * c.S) if c.mixer == "attention" else c.D * 2 * c.seq_hidden
    widest = max(c.S * 2 * c.D_h, mixer, c.L_out * c.vocab_size)
    return max(1, budget // widest)


@torch.no_grad()
def prior_rollouts(
    gram, x: torch.Tensor, num_samples: int, depth: int | None = None, halting: bool = False,
    chunk_size: int | None = None, progress: bool = False, tau: float = 1.0,
) -> Rollouts:
    """Sample ``num_samples`` trajectories per row of ``x`` [B, seq_len] from the prior (results on the CPU);
    ``tau`` is the sampling :class:`temperature`; ``chunk_size`` trajectories run together (default
    :func:`rows_per_chunk` of the model's sizes)."""
    if num_samples < 1:
        raise ValueError(f"num_samples (width) must be >= 1, got {num_samples}")
    depth = gram.cfg.N_sup if depth is None else depth
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    chunk_size = rows_per_chunk(gram.cfg) if chunk_size is None else chunk_size
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    tempered = temperature(tau)  # validates tau before any work
    B, N = x.shape[0], num_samples
    x = x.to(gram.z0.device)
    drawn = N if getattr(gram, "draws_latents", True) else 1  # a model that draws nothing: N equal trajectories
    flat = x.repeat_interleave(drawn, dim=0)  # fold width into the batch: row b*drawn + i is draw i of b
    starts = range(0, len(flat), chunk_size)
    out = None  # answers, halt_prob, value of every drawn row, filled chunk by chunk (one copy of the result)
    with tempered:
        for i in tqdm(starts, desc="rollouts", disable=not progress or len(starts) < 2):
            part = _rollout_chunk(gram, flat[i : i + chunk_size], depth, halting)
            out = out or [torch.empty((len(flat), *p.shape[1:]), dtype=p.dtype) for p in part]
            for o, p in zip(out, part):
                o[i : i + len(p)] = p
    answers, halt_prob, value = (o if drawn == N else o.repeat_interleave(N // drawn, dim=0) for o in out)
    if halting:
        fired = halt_prob > 0.5
        halt_step = torch.where(fired.any(-1), fired.float().argmax(-1), torch.full_like(fired[:, 0], depth - 1, dtype=torch.long))
    else:
        halt_step = torch.full((B * N,), depth - 1, dtype=torch.long)
    rows = torch.arange(B * N)
    final, final_value = answers[rows, halt_step], value[rows, halt_step]
    return Rollouts(
        answers=answers.view(B, N, depth, -1),
        halt_prob=halt_prob.view(B, N, depth),
        value=value.view(B, N, depth),
        halt_step=halt_step.view(B, N),
        final=final.view(B, N, -1),
        final_value=final_value.view(B, N),
    )


def _rollout_chunk(gram, x: torch.Tensor, depth: int, halting: bool):
    answers, halts, values = [], [], []
    carry, done = None, torch.zeros(len(x), dtype=torch.bool)
    for n in range(depth):
        if halting and bool(done.all()):  # every trajectory halted: repeat its last state
            answers.append(answers[-1]), halts.append(halts[-1]), values.append(values[-1])
            continue
        tr = poutine.trace(gram.model).get_trace(x, None, carry=carry, n_sup=1, step_offset=n)
        carry = tr.nodes["_RETURN"]["value"]
        answers.append(tr.nodes[f"y_hat_{n}"]["value"])
        halts.append(tr.nodes[f"halt_{n}"]["value"])
        values.append(tr.nodes[f"value_{n}"]["value"])
        done |= halts[-1] > 0.5
    return torch.stack(answers, 1).cpu(), torch.stack(halts, 1).cpu(), torch.stack(values, 1).cpu()


def majority_vote(final: torch.Tensor) -> torch.Tensor:
    """The most frequent answer per input: [B, N, L] -> [B, L] (ties: the earliest drawn)."""
    out = []
    for samples in final:
        uniq, inverse, counts = torch.unique(samples, dim=0, return_inverse=True, return_counts=True)
        first = torch.stack([(inverse == k).nonzero()[0, 0] for k in range(len(uniq))])
        best = max(range(len(uniq)), key=lambda k: (int(counts[k]), -int(first[k])))
        out.append(uniq[best])
    return torch.stack(out)


def lprm_best(final: torch.Tensor, final_value: torch.Tensor) -> torch.Tensor:
    """Best-of-N by the LPRM value: [B, N, L], [B, N] -> [B, L]."""
    idx = final_value.argmax(dim=1)
    return final[torch.arange(len(final)), idx]
