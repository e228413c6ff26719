"""The analysis input: one trained run (:class:`RunData`) and helpers to read its training history.

A run is a trained model (EMA weights, eval mode), its task, a held-out split and the trainer's JSONL
log.  History records carry ``"kind"``: ``"train"`` (one per optimiser update or per batch) or
``"eval"`` (prior/posterior accuracy, Eq. 13 ELBO, surrogate, KL per transition; gram-paper.md §2.2–2.3,
App. A.3).  Logs from older or partial runs may lack the kind or any key: every reader here turns a
missing value into NaN instead of failing (pyro-arviz-notes.md §2.3, ``training`` group).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import gram_pyro
from gram_pyro.checkpoint import read_jsonl
import gram_tasks as tasks

TRAIN_KEYS = ("loss", "nll", "kl", "beta", "grad_norm", "posterior_acc", "lr")
EVAL_KEYS = ("prior_acc", "prior_coverage", "posterior_acc", "elbo_full", "elbo_surrogate")


@dataclass
class RunData:
    name: str                 # e.g. the run folder name
    task: tasks.Task          # the task object
    gram: gram_pyro.GRAM      # trained model in eval mode (EMA weights); gram.cfg.mode == "deterministic" for the baseline
    split: tasks.Split        # evaluation split (held-out); use split.inputs (unique inputs) and split.solutions
    history: list[dict]       # training log records, see below
    seed: int = 0


read_history = read_jsonl  # a trainer JSONL log; blank lines and a torn last line are skipped


def train_records(history: list[dict]) -> list[dict]:
    """``kind == "train"`` records; a record without a kind but with a ``loss`` counts as one (older logs)."""
    return [r for r in history if r.get("kind", "train" if "loss" in r else None) == "train"]


def eval_records(history: list[dict]) -> list[dict]:
    return [r for r in history if r.get("kind") == "eval"]


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def record_steps(records: list[dict]) -> np.ndarray:
    """The x-axis of a curve: ``step`` where logged, else ``batch``, else the record's position."""
    return np.array([_number(r.get("step", r.get("batch", i))) for i, r in enumerate(records)], dtype=float)


def record_array(records: list[dict], key: str) -> np.ndarray:
    """``key`` of every record as floats, NaN where missing or not a number."""
    return np.array([_number(r.get(key)) for r in records], dtype=float)


def kl_matrix(records: list[dict], n_transitions: int) -> np.ndarray:
    """``kl_per_transition`` of every eval record as [records, n_transitions], NaN-padded."""
    out = np.full((len(records), n_transitions), np.nan)
    for i, r in enumerate(records):
        kl = r.get("kl_per_transition")
        if isinstance(kl, (list, tuple)):
            vals = np.array([_number(v) for v in kl[:n_transitions]], dtype=float)
            out[i, : len(vals)] = vals
    return out


def run_kind(run: RunData) -> str:
    """``"deterministic"`` for a model without latent sites (the TRM-style ablation or a baseline system,
    gram_pyro/baselines), else the GRAM mode (``"gram"`` or an ablation)."""
    return run.gram.cfg.mode if run.gram.cfg.stochastic else "deterministic"


def run_label(run: RunData) -> str:
    """A short legend label: the run name with its mode and, for stochastic runs, β."""
    cfg = run.gram.cfg
    kind = cfg.mode if cfg.family == "gram" else cfg.family
    return f"{run.name} ({kind})" if not cfg.stochastic else f"{run.name} ({kind}, β={cfg.beta:g})"


def chain_key(run: RunData) -> tuple:
    """Runs that differ only in their seed share this key and are analysed as chains of one DataTree."""
    cfg = {k: v for k, v in run.gram.cfg.to_dict().items() if k != "seed"}
    return (run.task.name, tuple(sorted((k, repr(v)) for k, v in cfg.items())))


def targets(split: tasks.Split) -> np.ndarray:
    """One target per unique input: its first row of ``split.y``, else its first listed solution."""
    out = np.zeros((len(split.inputs), split.y.shape[1]), dtype=np.int64)
    seen = np.zeros(len(split.inputs), dtype=bool)
    for row, g in enumerate(np.asarray(split.group)):
        if not seen[g]:
            out[g], seen[g] = split.y[row], True
    for g in np.flatnonzero(~seen):
        sols = split.solutions[g] if split.solutions is not None else None
        if sols is None or not len(sols):
            raise ValueError(f"input {g} of the split has neither a row in split.y nor a listed solution")
        out[g] = sols[0]
    return out
