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

from gram_analysis.run import eval_records, kl_matrix, record_array, record_steps, train_records


def _last_finite(a: np.ndarray) -> float:
    ok = np.isfinite(a)
    return float(a[ok][-1]) if ok.any() else math.nan


def elbo_curves(history: list[dict]) -> dict[str, np.ndarray]:
    """Training and evaluation-record ELBO curves (per instance, nats; the eval records' ELBO is on the first
    64 training pairs, not held-out ones).

    ``train_step``/``train_surrogate_elbo``: −loss of every train record (β-weighted surrogate, Eq. 14),
    ``train_kl`` its β-scaled KL;
    ``eval_step``/``elbo_full`` (Eq. 13)/``elbo_surrogate`` (Eq. 14 at β = 1, mean over steps) and
    their difference ``gap`` = surrogate − full.
    """
    tr, ev = train_records(history), eval_records(history)
    full, surr = record_array(ev, "elbo_full"), record_array(ev, "elbo_surrogate")
    return {
        "train_step": record_steps(tr),
        "train_surrogate_elbo": -record_array(tr, "loss"),
        "train_kl": record_array(tr, "kl"),
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


# ------------------------------------------------------------------ report tables
def curve_rows(history: list[dict]) -> tuple[list[dict], list[dict]]:
    """Rows of the eval curves (ELBO, surrogate, posterior and prior accuracy, gap) and of the train curves
    (supervision step ``n``, surrogate −loss, β-scaled KL, posterior accuracy on the training batch)."""
    c, g = elbo_curves(history), accuracy_gap(history)
    ev = [{"eval_step": float(s), "elbo_full": float(f), "elbo_surrogate": float(u), "posterior_acc": float(p),
           "prior_acc": float(q), "accuracy_gap": float(d)}
          for s, f, u, p, q, d in zip(c["eval_step"], c["elbo_full"], c["elbo_surrogate"], g["posterior_acc"],
                                      g["prior_acc"], g["gap"])]
    tr = [{"svi_step": float(s), "n": float(n), "surrogate_elbo": float(e), "kl": float(k), "posterior_acc": float(p)}
          for s, n, e, k, p in zip(c["train_step"], record_array(train_records(history), "n"), c["train_surrogate_elbo"],
                                   c["train_kl"], g["train_posterior_acc"])]
    return ev, tr


def kl_rows(final_kl: np.ndarray, history: list[dict], n_sup: int, T: int) -> tuple[list[dict], list[dict]]:
    """Rows of the final model's KL per transition ``final_kl`` [N_sup·T], and of each supervision step's
    KL over training from the eval records."""
    final = [{"transition": t + 1, "supervision_step": t // T + 1, "kl": float(v)} for t, v in enumerate(final_kl)]
    prof = kl_profile(history, n_sup, T)
    over = [{"eval_step": float(s), "supervision_step": n + 1, "kl": float(v)}
            for s, row in zip(prof["eval_step"], prof["per_step"]) for n, v in enumerate(row)]
    return final, over
