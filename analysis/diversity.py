"""Solution and trajectory diversity: the numbers users compare across models (gram-paper.md §3, §5.6, §6.4).

Per instance: validity of every sample, distinct valid answers (canonical forms) and exact coverage@N
against the enumerated solution set, all computed by the task (``Task.validity``, ``Task.distinct_valid``,
``Task.coverage_at``: the one implementation), per-position predictive
entropy, mean pairwise Hamming distance, and the spread of the latent trajectories per supervision step.
For the variational fit: Pareto k̂ of log p − log q (pyro-arviz-notes.md §2.4); across independently
trained runs of one configuration (runs as chains): ESS and R-hat (pyro-arviz-notes.md §2.4).  Every
function takes numpy arrays and returns numpy arrays or floats; ArviZ is called only here and in the
other ``analysis`` modules.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

import arviz_stats  # noqa: F401  (registers the .azstats accessor used below)


def validity(task, x: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """``task.verify`` of every sample: x [G, seq_len], samples [G, N, L] -> bool [G, N] (``Task.validity``)."""
    return task.validity(x, samples)


def distinct_valid(task, samples: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Number of distinct valid answers (canonical forms) per input: [G, N, L], [G, N] -> int [G]
    (``Task.distinct_valid``)."""
    return task.distinct_valid(samples, valid)


def coverage_at(task, samples: np.ndarray, valid: np.ndarray, solutions: list | None, widths) -> np.ndarray:
    """Exact coverage@N per input and width: distinct valid canonical answers among the first N samples
    divided by the size of the input's solution set.  [G, len(widths)], NaN where the set is not enumerable
    (``Task.coverage_at``).
    """
    return task.coverage_at(samples, valid, solutions, widths)


def predictive_entropy(samples: np.ndarray, vocab_size: int) -> np.ndarray:
    """Entropy (nats) of the empirical token distribution at each position over the N samples: [G, N, L] -> [G, L]."""
    counts = (samples[..., None] == np.arange(vocab_size)).sum(axis=1)
    p = counts / samples.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=-1)


def mean_pairwise_hamming(samples: np.ndarray) -> np.ndarray:
    """Mean number of differing positions over all pairs i < j of the N samples: [G, N, L] -> [G] (NaN if N < 2)."""
    G, N, _ = samples.shape
    if N < 2:
        return np.full(G, np.nan)
    diff = (samples[:, :, None, :] != samples[:, None, :, :]).sum(-1)
    iu = np.triu_indices(N, 1)
    return diff[:, iu[0], iu[1]].mean(axis=1)


def trajectory_spread(h: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance of h to its mean over the N draws, per supervision step: [N, depth, F] -> [depth]."""
    return np.linalg.norm(h - h.mean(axis=0, keepdims=True), axis=-1).mean(axis=0)


def khat_threshold(num_draws: int) -> float:
    """The arviz-stats k̂ threshold min(1 − 1/log10(S), 0.7) for S draws (pyro-arviz-notes.md §2.4)."""
    return min(1.0 - 1.0 / math.log10(num_draws), 0.7) if num_draws > 10 else 0.0


def pareto_khat(log_weight: np.ndarray) -> np.ndarray:
    """Pareto k̂ of importance log weights over the last axis (draws): [..., S] -> [...].

    arviz-stats fits the generalised Pareto tail to the weights w = exp(lw − max lw) (right tail,
    r_eff = 1 since the draws are independent).  arviz-stats 0.8.0 with ``log_weights=True`` fits the
    tail of the *log* weights, which gives the same k̂ whatever the tail (measured; pyro-arviz-notes.md
    §2.4 pitfall), so the weights are exponentiated here.  NaN where there are fewer than 25 draws or the
    weights are constant (a deterministic model has one trajectory per input).
    """
    lw = np.asarray(log_weight, dtype=np.float64)
    out = np.full(lw.shape[:-1], np.nan)
    if lw.shape[-1] < 25:
        return out
    flat, res = lw.reshape(-1, lw.shape[-1]), out.reshape(-1)
    for i, row in enumerate(flat):
        if np.isfinite(row).all() and np.ptp(row) > 1e-9 * max(1.0, np.abs(row).max()):
            w = xr.DataArray(np.exp(row - row.max()), dims=["draw"])
            res[i] = float(w.azstats.pareto_khat(sample_dims=["draw"], tail="right", r_eff=1.0))
    return res


def chain_diagnostics(stat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bulk ESS and rank R-hat of a per-draw statistic [chain, draw, instance] with runs as chains.

    Returns (ess, rhat), each [instance]; NaN where the statistic is constant (e.g. a deterministic run).
    """
    da = xr.DataArray(np.asarray(stat, dtype=np.float64), dims=["chain", "draw", "instance"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = da.azstats.ess(sample_dims=["chain", "draw"], method="bulk").values
        rhat = da.azstats.rhat(sample_dims=["chain", "draw"], method="rank").values
    return ess, rhat


def summarise(task, inputs, final, solutions, widths, vocab_size) -> dict:
    """Per-instance diversity of final answers [G, S, L] at the training depth.

    ``valid`` [G, S] covers every draw; ``coverage`` [G, W] is exact coverage@N per width N (NaN without
    solution sets); ``distinct_valid`` [G], ``entropy`` [G, L] and ``hamming`` [G] use the first N_max =
    max(widths) draws, so that they compare across models drawn with different S.
    """
    widths = [w for w in widths if w <= final.shape[1]]
    n_max = max(widths, default=final.shape[1])
    valid = validity(task, inputs, final)
    return {
        "widths": np.array(widths),
        "valid": valid,
        "distinct_valid": distinct_valid(task, final[:, :n_max], valid[:, :n_max]),
        "coverage": coverage_at(task, final, valid, solutions, widths),
        "entropy": predictive_entropy(final[:, :n_max], vocab_size),
        "hamming": mean_pairwise_hamming(final[:, :n_max]),
    }


# ------------------------------------------------------------------ report tables from a DataTree
def nanmean(a) -> float:
    """Mean of the finite entries, NaN when there are none (without numpy's empty-slice warning)."""
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


def width_rows(dt, task, widths) -> list[dict]:
    """Per width N (gram-paper.md §3.1): mean coverage@N, distinct valid answers among the first N prior
    samples and pass@N (inputs with at least one valid sample), averaged over chains."""
    y, valid = dt["predictions"]["y"].values, dt["sample_stats"]["valid"].values.astype(bool)
    cov = dt["diversity"]["coverage"]
    rows = []
    for n in widths:
        if n > y.shape[1]:
            continue
        distinct = [distinct_valid(task, np.swapaxes(y[c, :n], 0, 1), valid[c, :n].T) for c in range(len(y))]
        rows.append({"width": n, "coverage": nanmean(cov.sel(width=n).values) if n in cov["width"].values else math.nan,
                     "distinct_valid": nanmean(distinct), "pass": float(valid[:, :n].any(axis=1).mean())})
    return rows


def depth_rows(dt, task, draws: int = 8) -> list[dict]:
    """Accuracy (fraction of valid answers) of the first ``draws`` prior samples after each supervision step."""
    ys, x = dt["predictions"]["y_step"].values[:, :draws], dt["constant_data"]["x"].values
    return [{"depth": d + 1, "accuracy": float(np.mean([validity(task, x, np.swapaxes(ys[c, :, :, d], 0, 1)).mean()
                                                         for c in range(len(ys))]))} for d in range(ys.shape[3])]
