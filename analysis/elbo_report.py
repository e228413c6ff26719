"""The ELBO report: what the training log says about the variational fit (gram-paper.md §2.2–2.4, App. A.3).

* **Surrogate vs full ELBO** (App. A.3): the truncated surrogate (Eq. 14, mean over supervision steps)
  and the full-trajectory ELBO (Eq. 13) on held-out data over training.  Both should improve; their
  gap is the KL of the transitions the surrogate leaves out, not an optimisation failure.
* **KL per transition** (latest eval record, and each supervision step's KL over training): a
  collapsing posterior shows KL ≈ 0 everywhere (gram-paper.md §2.4).
* **Posterior vs prior accuracy gap** over training: a large gap means the model relies on the guide
  seeing y, i.e. β is too small (gram-paper.md §2.4, pyro-arviz-notes.md §0.1).
* **β sensitivity**: final numbers of several runs of one task that differ in β.

All functions take history records (see :mod:`analysis.run`) and tolerate missing keys (NaN).
"""

from __future__ import annotations

import math

import numpy as np

from analysis.run import eval_records, kl_matrix, record_array, record_steps, train_records


def _last_finite(a: np.ndarray) -> float:
    ok = np.isfinite(a)
    return float(a[ok][-1]) if ok.any() else math.nan


def elbo_curves(history: list[dict]) -> dict[str, np.ndarray]:
    """Training and held-out ELBO curves (per instance, nats).

    ``train_step``/``train_surrogate_elbo``: −loss of every train record (β-weighted surrogate, Eq. 14);
    ``eval_step``/``elbo_full`` (Eq. 13)/``elbo_surrogate`` (Eq. 14 at β = 1, mean over steps) and
    their difference ``gap`` = surrogate − full.
    """
    tr, ev = train_records(history), eval_records(history)
    full, surr = record_array(ev, "elbo_full"), record_array(ev, "elbo_surrogate")
    return {
        "train_step": record_steps(tr),
        "train_surrogate_elbo": -record_array(tr, "loss"),
        "eval_step": record_steps(ev),
        "elbo_full": full,
        "elbo_surrogate": surr,
        "gap": surr - full,
    }


def kl_profile(history: list[dict], n_sup: int, T: int) -> dict[str, np.ndarray]:
    """KL per transition from the eval records.

    ``latest`` [N_sup·T]: the last eval record that logged it (NaN if none); ``per_step`` [evals, N_sup]:
    each supervision step's KL (sum over its T transitions) over training; ``eval_step`` [evals].
    """
    ev = [r for r in eval_records(history) if r.get("kl_per_transition") is not None]
    mat = kl_matrix(ev, n_sup * T)
    latest = mat[-1] if len(mat) else np.full(n_sup * T, np.nan)
    per_step = mat.reshape(len(mat), n_sup, T).sum(axis=-1) if len(mat) else np.zeros((0, n_sup))
    return {"latest": latest, "per_step": per_step, "eval_step": record_steps(ev)}


def accuracy_gap(history: list[dict]) -> dict[str, np.ndarray]:
    """Posterior (guide sees y) and prior (test-time sampler) accuracy over training, and their gap.

    Eval records give both; train records give the posterior accuracy on training batches only.
    """
    ev, tr = eval_records(history), train_records(history)
    post, prior = record_array(ev, "posterior_acc"), record_array(ev, "prior_acc")
    return {
        "eval_step": record_steps(ev),
        "posterior_acc": post,
        "prior_acc": prior,
        "prior_coverage": record_array(ev, "prior_coverage"),
        "gap": post - prior,
        "train_step": record_steps(tr),
        "train_posterior_acc": record_array(tr, "posterior_acc"),
    }


def a3_check(curves: dict[str, np.ndarray]) -> dict[str, float | bool | None]:
    """App. A.3 check: first and last finite full ELBO and surrogate, and whether both improved."""
    out: dict[str, float | bool | None] = {}
    for key in ("elbo_full", "elbo_surrogate"):
        a = curves[key][np.isfinite(curves[key])]
        out[f"{key}_first"] = float(a[0]) if len(a) else math.nan
        out[f"{key}_last"] = float(a[-1]) if len(a) else math.nan
        out[f"{key}_improved"] = bool(a[-1] > a[0]) if len(a) > 1 else None
    out["final_gap"] = _last_finite(curves["gap"])
    return out


def final_numbers(history: list[dict]) -> dict[str, float]:
    """The last logged value of each headline number (NaN when never logged)."""
    ev, tr = eval_records(history), train_records(history)
    out = {k: _last_finite(record_array(ev, k)) for k in ("prior_acc", "posterior_acc", "elbo_full", "elbo_surrogate")}
    out["train_loss"] = _last_finite(record_array(tr, "loss"))
    out["train_kl"] = _last_finite(record_array(tr, "kl"))
    return out


def beta_sensitivity(rows: list[dict]) -> list[dict]:
    """Sort per-run summaries by β and keep one task: rows need ``task``, ``beta`` and any numbers.

    Returns the rows of the task with the most distinct β values, sorted by β, or [] when no task has
    runs at two or more values of β.
    """
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    best = max(by_task.values(), key=lambda rs: len({r["beta"] for r in rs}), default=[])
    if len({r["beta"] for r in best}) < 2:
        return []
    return sorted(best, key=lambda r: r["beta"])
