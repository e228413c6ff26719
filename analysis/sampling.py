"""Drawing what the analysis needs from a trained model, with the model's own Pyro functions.

* Prior rollouts p_θ(τ | x) over width and depth (gram-paper.md §3.1): :func:`gram_pyro.prior_rollouts`,
  width folded into the batch, run past the training depth N_sup.
* Latent trajectories for the PCA view (gram-paper.md §6.4, Fig. 18–19): the model stepped one
  supervision step at a time under ``poutine.trace``, reading h from the returned ``Carry``.
* Guide rollouts q_φ(τ | x, y) (posterior reconstructions) and the per-draw log weight
  log p_θ(y, τ | x) − log q_φ(τ | x, y): ``gram_pyro.model.guided_traces`` (guide traced, model replayed), scored
  with ``Trace.compute_log_prob`` at β = 1 and without the truncation masks (pyro-arviz-notes.md §1.10,
  §2.4; the k̂ diagnostic of Yao et al. 2018).  In deterministic mode the guide is empty and the log
  weight is the likelihood of the observed steps alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

import gram_pyro
from gram_pyro.model import guided_traces
from gram_analysis.diversity import trajectory_spread
from gram_analysis.run import RunData, run_label, targets

MIN_DRAWS = 32  # Pareto k̂ needs at least 5 tail draws: min(0.2 S, 3 sqrt S) >= 5 from S = 25 on


@dataclass
class RunSamples:
    """Everything drawn from one run on its first ``G`` held-out inputs (numpy, CPU).

    ``prior_answers`` [G, N, depth, L_out] decoded answer after each supervision step of N prior
    trajectories; ``halt_prob``/``value`` [G, N, depth]; ``guide_answers`` [G, N, N_sup, L_out] and
    ``log_weight`` [G, N] from guide rollouts that see the target; ``traj_pcs`` [G_t, N, depth, k] h
    projected on each instance's first k principal components, ``traj_explained`` [G_t, k] their
    explained-variance ratios, ``traj_spread`` [G_t, depth] mean distance of h to its mean over draws;
    ``elbo`` the Eq. 13 ELBO, its KL per transition and the surrogate of the final model on these inputs
    (:func:`gram_pyro.full_trajectory_elbo`, per instance, β = 1).
    """

    name: str
    label: str
    task: object
    mode: str
    beta: float
    n_sup: int
    n_transitions: int
    seed: int
    inputs: np.ndarray
    targets: np.ndarray
    solutions: list | None
    prior_answers: np.ndarray
    halt_prob: np.ndarray
    value: np.ndarray
    guide_answers: np.ndarray
    log_weight: np.ndarray
    traj_pcs: np.ndarray
    traj_explained: np.ndarray
    traj_spread: np.ndarray
    elbo: dict

    @property
    def final(self) -> np.ndarray:
        """Prior answers at the training depth N_sup, [G, N, L_out]: the samples diversity is measured on."""
        return self.prior_answers[:, :, self.n_sup - 1]


def _device(gram) -> torch.device:
    return next(gram.parameters()).device


@torch.no_grad()
def guide_rollouts(gram, x: torch.Tensor, y: torch.Tensor, num_samples: int, chunk_size: int | None = None):
    """Guide trajectories replayed through the model: answers [B, M, N_sup, L] and log p − log q [B, M]."""
    n_sup = gram.cfg.N_sup
    B, M = x.shape[0], num_samples
    xs, ys = x.repeat_interleave(M, dim=0), y.repeat_interleave(M, dim=0)
    answers, log_w = [], []
    chunk_size = gram_pyro.inference.rows_per_chunk(gram.cfg) if chunk_size is None else chunk_size
    for i in range(0, len(xs), chunk_size):
        xb, yb = xs[i : i + chunk_size], ys[i : i + chunk_size]
        model_trace, guide_trace = guided_traces(gram.model, gram.guide, xb, yb, n_sup=n_sup, beta=1.0)
        answers.append(torch.stack([model_trace.nodes[f"y_hat_{n}"]["value"] for n in range(n_sup)], dim=1))
        log_w.append(_log_weight(model_trace, guide_trace, len(xb)))
    return torch.cat(answers).view(B, M, n_sup, -1), torch.cat(log_w).view(B, M)


def _log_weight(model_trace, guide_trace, batch: int) -> torch.Tensor:
    """Per instance Σ log p(latent and observed sites) − Σ log q(latent sites), unscaled and unmasked."""
    model_trace, guide_trace = prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    total = torch.zeros(batch)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                total = total + sign * site["unscaled_log_prob"].detach().cpu().reshape(batch)
    return total


@torch.no_grad()
def trajectory_states(gram, x: torch.Tensor, depth: int) -> torch.Tensor:
    """h after each of ``depth`` prior supervision steps: [B, depth, S·D] (one row per trajectory)."""
    carry, states = None, []
    for n in range(depth):
        tr = poutine.trace(gram.model).get_trace(x, None, carry=carry, n_sup=1, step_offset=n)
        carry = tr.nodes["_RETURN"]["value"]
        states.append(carry.h.reshape(len(x), -1).float().cpu())
    return torch.stack(states, dim=1)


def pca_project(h: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA (numpy SVD) of one instance's states h [N, depth, F]: projections [N, depth, k], explained ratio [k].

    Components beyond the data's rank are returned as zeros.
    """
    N, depth, F = h.shape
    flat = h.reshape(N * depth, F).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(n_components, len(s))
    proj = np.zeros((N * depth, n_components))
    proj[:, :k] = centred @ vt[:k].T
    var = s**2
    ratio = np.zeros(n_components)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return proj.reshape(N, depth, n_components), ratio


def draw_samples(
    run: RunData,
    num_draws: int = 20,
    depth: int | None = None,
    max_inputs: int = 200,
    traj_inputs: int = 4,
    n_components: int = 3,
    chunk_size: int | None = None,
) -> RunSamples:
    """Prior rollouts, guide rollouts and PCA-projected trajectories of one run on its first inputs.

    ``num_draws`` is raised to at least ``MIN_DRAWS`` so that k̂ of the log weights is defined;
    ``depth`` defaults to 2·N_sup (accuracy past the training depth, gram-paper.md §3.1); trajectories
    are recorded for the first ``traj_inputs`` inputs.  Sampling is seeded by ``run.seed`` without
    touching the caller's torch RNG state.
    """
    gram, cfg = run.gram, run.gram.cfg
    num_draws = max(num_draws, MIN_DRAWS)
    depth = 2 * cfg.N_sup if depth is None else depth
    if depth < cfg.N_sup:
        raise ValueError(f"depth must be >= N_sup = {cfg.N_sup}, got {depth}")
    inputs = np.asarray(run.split.inputs)[:max_inputs]
    tgt = targets(run.split)[:max_inputs]
    sols = None if run.split.solutions is None else list(run.split.solutions[:max_inputs])
    dev = _device(gram)
    x, y = torch.as_tensor(inputs, device=dev), torch.as_tensor(tgt, device=dev)
    traj_inputs = max(1, min(traj_inputs, len(inputs)))
    was_training = gram.training
    gram.eval()
    try:
        with torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
            torch.manual_seed(run.seed)
            prior = gram_pyro.prior_rollouts(gram, x, num_samples=num_draws, depth=depth, chunk_size=chunk_size)
            g_answers, log_w = guide_rollouts(gram, x, y, num_draws, chunk_size)
            pcs, explained, spread = [], [], []
            for xi in x[:traj_inputs]:
                h = trajectory_states(gram, xi.expand(num_draws, -1), depth).numpy()
                p, r = pca_project(h, n_components)
                pcs.append(p), explained.append(r), spread.append(trajectory_spread(h))
            elbo = gram_pyro.full_trajectory_elbo(gram, x, y)
    finally:
        gram.train(was_training)
    return RunSamples(
        name=run.name,
        label=run_label(run),
        task=run.task,
        mode=cfg.mode,
        beta=float(cfg.beta),
        n_sup=cfg.N_sup,
        n_transitions=cfg.N_sup * cfg.T,
        seed=run.seed,
        inputs=inputs,
        targets=tgt,
        solutions=sols,
        prior_answers=prior.answers.cpu().numpy(),
        halt_prob=prior.halt_prob.cpu().numpy(),
        value=prior.value.cpu().numpy(),
        guide_answers=g_answers.cpu().numpy(),
        log_weight=log_w.numpy().astype(np.float64),
        traj_pcs=np.array(pcs),
        traj_explained=np.array(explained),
        traj_spread=np.array(spread),
        elbo=elbo,
    )
