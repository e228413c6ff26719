"""Posterior and prior predictive checks: are sampled answers distributed like the data? (gram-paper.md §5.6)

Three checks on held-out inputs:

1. **Validity.** The rate of valid prior-predictive samples against the data.  Data targets are valid
   by construction; :func:`validity_check` verifies it and reports any that fail.
2. **Task statistics.** The distribution of a statistic T(y) in samples and in data.  Generic: the
   count of each token per answer (digits for Sudoku, colours for graph colouring).  Task-specific,
   from ``Task.answer_statistics``: conflict edges for graph colouring (the Table 1 metric,
   gram-paper.md §5.5), queens placed for N-Queens, repeated symbols for Latin squares.  Reported as
   the mean in data and samples and the predictive p-value P(T(sample) > T(data)) + ½ P(T(sample) =
   T(data)), pooled over inputs and draws: values near 0 or 1 flag a statistic the model gets systematically wrong.
3. **Guide reconstructions vs prior rollouts.** Accuracy and exact match to the target of each: the
   posterior/prior gap of gram-paper.md §2.4 measured on held-out data.
"""

from __future__ import annotations

import numpy as np

from gram_analysis.diversity import validity
from gram_tasks.base import token_counts  # noqa: F401  (re-exported: the one token count, ``Task.answer_statistics``)


def task_statistics(task, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of answers y [G, ..., L] for inputs x [G, seq_len], each [G, ...]: the task's own
    (``Task.answer_statistics``: ``count of token v`` for every token v ≥ 1, plus e.g. ``conflict edges``
    for graph colouring or ``queens placed`` for N-Queens)."""
    return task.answer_statistics(x, y)


def predictive_pvalue(samples: np.ndarray, data: np.ndarray) -> float:
    """Mid-p P(T_s > T_d) + ½ P(T_s = T_d), pooled over inputs and draws: samples [G, N], data [G]."""
    s, d = np.asarray(samples, dtype=float), np.asarray(data, dtype=float)[:, None]
    return float(((s > d) + 0.5 * (s == d)).mean())


def validity_check(task, x: np.ndarray, targets: np.ndarray, samples: np.ndarray) -> dict:
    """Validity of the data targets (should be 1.0) and of the samples [G, N, L]."""
    data_ok = validity(task, x, targets[:, None, :])[:, 0]
    sample_ok = validity(task, x, samples)
    return {
        "data_valid_rate": float(data_ok.mean()),
        "invalid_data_inputs": np.flatnonzero(~data_ok).tolist(),
        "sample_valid_rate": float(sample_ok.mean()),
        "sample_valid": sample_ok,
    }


def statistic_table(task, x: np.ndarray, targets: np.ndarray, samples: np.ndarray) -> list[dict]:
    """One row per statistic: mean and s.d. in data and samples, and the predictive p-value."""
    data, samp = task_statistics(task, x, targets), task_statistics(task, x, samples)
    rows = []
    for name in data:
        d, s = data[name].astype(float), samp[name].astype(float)
        rows.append({
            "statistic": name,
            "data_mean": float(d.mean()),
            "data_sd": float(d.std()),
            "sample_mean": float(s.mean()),
            "sample_sd": float(s.std()),
            "p_value": predictive_pvalue(s, d),
        })
    return rows


def guide_vs_prior(task, x: np.ndarray, targets: np.ndarray, guide_final: np.ndarray, prior_final: np.ndarray) -> dict:
    """Task accuracy and exact match to the target of guide reconstructions and prior rollouts [G, N, L]."""
    out = {}
    for name, s in (("guide", guide_final), ("prior", prior_final)):
        out[f"{name}_accuracy"] = float(validity(task, x, s).mean())
        out[f"{name}_exact_match"] = float((s == targets[:, None, :]).all(-1).mean())
    out["accuracy_gap"] = out["guide_accuracy"] - out["prior_accuracy"]
    return out


def ppc_rows(dt, task) -> tuple[list[dict], list[dict]]:
    """From a DataTree (first chain): one validity row (data, prior, guide) and the statistic rows."""
    x, tgt = dt["constant_data"]["x"].values, dt["observed_data"]["y"].values
    prior = np.swapaxes(dt["predictions"]["y"].values[0], 0, 1)
    guide = np.swapaxes(dt["posterior_predictive"]["y"].values[0], 0, 1)
    check, gp = validity_check(task, x, tgt, prior), guide_vs_prior(task, x, tgt, guide, prior)
    row = {"data_valid": check["data_valid_rate"], "prior_valid": check["sample_valid_rate"],
           "guide_valid": gp["guide_accuracy"], "prior_exact_match": gp["prior_exact_match"],
           "guide_exact_match": gp["guide_exact_match"], "invalid_data_inputs": len(check["invalid_data_inputs"])}
    return [row], statistic_table(task, x, tgt, prior)
