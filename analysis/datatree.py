"""Runs as an ArviZ DataTree (pyro-arviz-notes.md §2.2–2.3), saved as netCDF and reloaded with xarray.

Dims: ``chain`` = independently trained runs of one configuration (seeds), ``draw`` = trajectory,
``instance`` = held-out input, ``position`` = answer token, ``step`` = supervision step.

| group | variables |
|---|---|
| ``predictions`` | prior rollouts (the test-time sampler, gram-paper.md §3.1): ``y`` (chain, draw, instance, position) at the training depth N_sup, ``y_step`` (…, step, position) after every step up to 2·N_sup |
| ``posterior_predictive`` | guide reconstructions q_φ(τ \\| x, y): ``y``, ``y_step`` over N_sup steps |
| ``observed_data`` / ``constant_data`` | targets ``y`` (one per input) / inputs ``x`` |
| ``sample_stats`` | per prior draw: ``valid``, ``conflict_edges`` (graph colouring), ``halt_step``, ``lprm_value``, ``hamming_to_target``; per guide draw: ``log_weight`` = log p − log q, ``guide_valid`` |
| ``training`` | train records over ``svi_step_index`` (``svi_step``, ``loss``, ``kl``, ...) and eval records over ``eval_step_index`` (``eval_step``, ``eval_prior_acc``, ``eval_elbo_full``, ``eval_kl_per_transition``, ...), chain-indexed and NaN-padded; ``final_*``: Eq. 13 ELBO, log-likelihood, surrogate and KL per transition of the final model on the analysed inputs |
| ``diversity`` | ``distinct_valid``, ``coverage`` (…, width), ``entropy`` (…, position), ``hamming``, ``pareto_khat``, ``trajectory_spread`` (…, traj_instance, step); ``ess_*``/``rhat_*`` with several chains |
| ``trajectory`` | ``pc`` (chain, draw, traj_instance, step, component) and ``explained_variance_ratio`` |

Root attributes: ``task``, ``mode``, ``beta``, ``n_sup``, ``n_transitions``, ``depth`` and, as JSON text, the
run names, labels and seeds of the chains.  Custom non-sample groups are built with ``dict_to_dataset(..., sample_dims=[])`` and attached as
``xr.DataTree`` nodes (pyro-arviz-notes.md §2.2: ``from_dict`` rejects them with default sample dims).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

import arviz_base as azb

from gram_pyro.checkpoint import atomic_path
from gram_analysis import diversity
from gram_analysis.run import EVAL_KEYS, TRAIN_KEYS, eval_records, kl_matrix, record_array, record_steps, train_records
from gram_analysis.sampling import RunSamples


def _stack(arrays: list[np.ndarray], fill=np.nan) -> np.ndarray:
    """Stack per-chain arrays whose first axis may differ in length, padding with ``fill``."""
    n = max((a.shape[0] for a in arrays), default=0)
    out = np.full((len(arrays), n, *arrays[0].shape[1:]), fill, dtype=float)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out


def halt_steps(halt_prob: np.ndarray) -> np.ndarray:
    """First step with σ(q_halt) > 0.5 per trajectory (gram-paper.md §2.5), or ``depth`` if it never fires."""
    fired = halt_prob > 0.5
    return np.where(fired.any(-1), fired.argmax(-1), halt_prob.shape[-1])


def _training_group(samples: list[RunSamples], histories: list[list[dict]], n_transitions: int) -> xr.Dataset:
    data, dims = {}, {}
    trs, evs = [train_records(h) for h in histories], [eval_records(h) for h in histories]
    data["svi_step"] = _stack([record_steps(t) for t in trs])
    dims["svi_step"] = ["chain", "svi_step_index"]
    for key in TRAIN_KEYS:
        data[key] = _stack([record_array(t, key) for t in trs])
        dims[key] = ["chain", "svi_step_index"]
    data["eval_step"] = _stack([record_steps(e) for e in evs])
    dims["eval_step"] = ["chain", "eval_step_index"]
    for key in EVAL_KEYS:  # prefixed: train and eval records both log posterior_acc
        data[f"eval_{key}"] = _stack([record_array(e, key) for e in evs])
        dims[f"eval_{key}"] = ["chain", "eval_step_index"]
    data["eval_kl_per_transition"] = _stack([kl_matrix(e, n_transitions) for e in evs])
    dims["eval_kl_per_transition"] = ["chain", "eval_step_index", "transition"]
    # the final model on the analysed held-out inputs (Eq. 13, β = 1), whatever the log holds
    data["final_kl_per_transition"] = np.stack([np.asarray(s.elbo["kl_per_transition"], float) for s in samples])
    dims["final_kl_per_transition"] = ["chain", "transition"]
    for key in ("elbo", "log_lik", "surrogate"):
        data[f"final_{key}"] = np.array([float(s.elbo.get(key, np.nan)) for s in samples])
        dims[f"final_{key}"] = ["chain"]
    return azb.dict_to_dataset(data, sample_dims=[], dims=dims)


def _draw_major(samples: list[RunSamples], f) -> np.ndarray:
    """``f(run)`` [instance, draw, ...] for every run, stacked as [chain, draw, instance, ...]."""
    return np.swapaxes(np.stack([f(s) for s in samples]), 1, 2)


def _diversity_group(samples: list[RunSamples], widths) -> xr.Dataset:
    task = samples[0].task
    per = [diversity.summarise(task, s.inputs, s.final, s.solutions, widths, task.vocab_size) for s in samples]
    data = {
        "distinct_valid": np.stack([p["distinct_valid"] for p in per]),
        "coverage": np.stack([p["coverage"] for p in per]),
        "entropy": np.stack([p["entropy"] for p in per]),
        "hamming": np.stack([p["hamming"] for p in per]),
        "pareto_khat": np.stack([diversity.pareto_khat(s.log_weight) for s in samples]),
        "trajectory_spread": np.stack([s.traj_spread for s in samples]),
    }
    dims = {
        "distinct_valid": ["chain", "instance"],
        "coverage": ["chain", "instance", "width"],
        "entropy": ["chain", "instance", "position"],
        "hamming": ["chain", "instance"],
        "pareto_khat": ["chain", "instance"],
        "trajectory_spread": ["chain", "traj_instance", "step"],
    }
    if len(samples) > 1:  # runs as chains (pyro-arviz-notes.md §2.4)
        stats = {
            "valid": np.stack([p["valid"].T for p in per]).astype(float),
            "log_weight": np.stack([s.log_weight.T for s in samples]),
        }
        for name, arr in stats.items():
            data[f"ess_{name}"], data[f"rhat_{name}"] = diversity.chain_diagnostics(arr)
            dims[f"ess_{name}"] = dims[f"rhat_{name}"] = ["instance"]
    coords = {"width": np.asarray(per[0]["widths"])}
    n_max = int(max(per[0]["widths"], default=samples[0].final.shape[1]))
    return azb.dict_to_dataset(data, sample_dims=[], dims=dims, coords=coords, attrs={"n_max": n_max})


def build_datatree(samples: list[RunSamples], histories: list[list[dict]], widths=(1, 5, 20)) -> xr.DataTree:
    """One DataTree for one configuration; ``samples`` and ``histories`` hold one entry per run (chain).

    Every run must be of the same task and evaluated on the same inputs with the same draw counts.
    """
    if not samples or len(samples) != len(histories):
        raise ValueError("need one history per run and at least one run")
    first = samples[0]
    for s in samples[1:]:
        if s.task.name != first.task.name or not np.array_equal(s.inputs, first.inputs):
            raise ValueError(f"runs {first.name!r} and {s.name!r} differ in task or inputs; build one tree each")
    task = first.task
    stats = {  # validity as 0/1 floats: arviz_stats.summary refuses boolean variables
        "valid": _draw_major(samples, lambda s: diversity.validity(task, s.inputs, s.final)).astype(float),
        "halt_step": _draw_major(samples, lambda s: halt_steps(s.halt_prob)),
        "lprm_value": _draw_major(samples, lambda s: s.value[:, :, s.n_sup - 1]),
        "hamming_to_target": _draw_major(samples, lambda s: (s.final != s.targets[:, None, :]).sum(-1)),
        "log_weight": _draw_major(samples, lambda s: s.log_weight),
        "guide_valid": _draw_major(samples, lambda s: diversity.validity(task, s.inputs, s.guide_answers[:, :, -1]))
        .astype(float),
    }
    if hasattr(task, "conflict_edges"):
        stats["conflict_edges"] = _draw_major(samples, lambda s: task.conflict_edges(s.inputs, s.final))
    dims = {k: ["instance"] for k in stats}
    dims.update({
        "y": ["instance", "position"],
        "y_step": ["instance", "step", "position"],
        "x": ["instance", "input_position"],
    })
    dt = azb.from_dict(
        {
            "predictions": {
                "y": _draw_major(samples, lambda s: s.final),
                "y_step": _draw_major(samples, lambda s: s.prior_answers),
            },
            "posterior_predictive": {
                "y": _draw_major(samples, lambda s: s.guide_answers[:, :, -1]),
                "y_step": _draw_major(samples, lambda s: s.guide_answers),
            },
            "sample_stats": stats,
            "observed_data": {"y": first.targets},
            "constant_data": {"x": first.inputs},
        },
        dims=dims,
        pred_dims={"y": dims["y"], "y_step": dims["y_step"]},
        attrs={"/": {
            "task": task.name,
            # lists as JSON text: netCDF reads a one-element list attribute back as a scalar
            "runs": json.dumps([s.name for s in samples]),
            "labels": json.dumps([s.label for s in samples]),
            "seeds": json.dumps([int(s.seed) for s in samples]),
            "mode": first.mode,
            "beta": first.beta,
            "n_sup": first.n_sup,
            "n_transitions": first.n_transitions,
            "depth": int(first.prior_answers.shape[2]),
        }},
    )
    dt["training"] = xr.DataTree(_training_group(samples, histories, first.n_transitions))
    dt["diversity"] = xr.DataTree(_diversity_group(samples, widths))
    traj = azb.dict_to_dataset(
        {
            "pc": np.stack([np.swapaxes(s.traj_pcs, 0, 1) for s in samples]),
            "explained_variance_ratio": np.stack([s.traj_explained for s in samples]),
        },
        sample_dims=[],
        dims={"pc": ["chain", "draw", "traj_instance", "step", "component"],
              "explained_variance_ratio": ["chain", "traj_instance", "component"]},
    )
    dt["trajectory"] = xr.DataTree(traj)
    return dt


def save_datatree(dt: xr.DataTree, path: str | Path) -> Path:
    """Write ``dt`` as netCDF (h5netcdf) atomically: a temporary file in the same folder, then a rename."""
    with atomic_path(path) as tmp:
        dt.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)


def load_datatree(path: str | Path) -> xr.DataTree:
    """Reload a saved tree fully into memory (the file is closed afterwards)."""
    with xr.open_datatree(path, engine="h5netcdf") as dt:
        return dt.load()
