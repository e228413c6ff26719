"""Python API mirroring the CLI: ``fit``, ``evaluate``, ``sample``, ``load_run`` (the wiring layer).

This package (``gram_pyro.cli``) is the only place that joins the model core, the tasks and the
analysis.  A run folder holds ``config.json`` (the resolved :class:`RunConfig`), ``history.jsonl`` (one
record per update and per evaluation) and ``checkpoint.pt`` (crash-safe, see ``gram_pyro.checkpoint``).
Datasets are built once and cached as ``.npz`` under ``$GRAM_CACHE`` (default ``~/.cache/gram_pyro``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tasks
from gram_pyro import checkpoint
from gram_pyro.distributed import init_from_env, is_main_process, world_size_from_env
from gram_pyro.inference import lprm_best, majority_vote, prior_rollouts
from gram_pyro.model import GRAM
from gram_pyro.runconfig import ConfigError, RunConfig, build_run_config
from gram_pyro.trainer import Trainer
from tasks import Split, Task, TaskInputError


# ------------------------------------------------------------------ data
def cache_dir() -> Path:
    return Path(os.environ.get("GRAM_CACHE", Path.home() / ".cache" / "gram_pyro"))


def load_splits(task: Task, seed: int = 0, data_path: str | None = None, verbose: bool = False) -> dict[str, Split]:
    """A task's splits, built once per (task, seed, data file) and cached on disk."""
    key = f"{task.name}-seed{seed}"
    if data_path is not None:
        if not hasattr(task, "build_from_file"):
            raise TaskInputError(f"task {task.name} does not read data files")
        if not Path(data_path).is_file():
            raise TaskInputError(f"data file not found: {data_path}")
        key += "-" + hashlib.sha256(Path(data_path).read_bytes()).hexdigest()[:12]
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        try:
            return _read_splits(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt
    t0 = time.perf_counter()
    if verbose:
        print(f"building {task.name} (seed {seed}); cached afterwards in {path.parent} ...", file=sys.stderr, flush=True)
    splits = task.build_from_file(data_path, seed=seed) if data_path else task.build(seed)
    _write_splits(path, splits)
    if verbose:
        print(f"built {task.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return splits


def _write_splits(path: Path, splits: dict[str, Split]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, s in splits.items():
        arrays.update({f"{name}/x": s.x, f"{name}/y": s.y, f"{name}/group": s.group, f"{name}/inputs": s.inputs})
        if s.solutions is not None:
            arrays[f"{name}/sol_counts"] = np.array([len(a) for a in s.solutions], dtype=np.int64)
            arrays[f"{name}/sol"] = np.concatenate(s.solutions) if s.solutions else np.zeros((0, s.y.shape[1]), np.int64)
    arrays["splits"] = np.array(list(splits))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    checkpoint.atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def _read_splits(path: Path) -> dict[str, Split]:
    with np.load(path) as z:
        out = {}
        for name in z["splits"].tolist():
            sols = None
            if f"{name}/sol_counts" in z:
                sols = np.split(z[f"{name}/sol"], np.cumsum(z[f"{name}/sol_counts"])[:-1])
            out[name] = Split(z[f"{name}/x"], z[f"{name}/y"], z[f"{name}/group"], z[f"{name}/inputs"], sols)
        return out


def task_sizes(task: Task) -> dict[str, int]:
    return {"vocab_size": task.vocab_size, "seq_len": task.seq_len, "out_len": task.out_len}


def choose_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


# ------------------------------------------------------------------ runs
@dataclass
class Run:
    """A trained run loaded from its folder: the model holds the EMA weights."""

    path: Path
    config: RunConfig
    task: Task
    gram: GRAM
    history: list[dict]
    splits: dict[str, Split]


def read_history(path: Path) -> list[dict]:
    """The run's log records; a torn line (a crash mid-write) is skipped."""
    file = path / "history.jsonl"
    return checkpoint.read_jsonl(file) if file.exists() else []


def load_run(path: str | Path, data_path: str | None = None, device: str = "cpu") -> Run:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise checkpoint.CheckpointError(f"{path} is not a run folder (no config.json)")
    try:
        config = RunConfig.from_dict(json.loads((path / "config.json").read_text()))
    except json.JSONDecodeError as err:
        raise checkpoint.CheckpointError(f"{path / 'config.json'} is not valid JSON: {err}") from None
    state = checkpoint.load(path / "checkpoint.pt", identity=config.identity_hash())
    gram = GRAM(config.model)
    weights = state.get("ema") if state.get("ema") is not None else state.get("model")
    checkpoint.load_weights(gram, weights if isinstance(weights, dict) else {}, path / "checkpoint.pt")
    gram.to(choose_device(device)).eval()
    task = tasks.get_task(config.task)
    return Run(path, config, task, gram, read_history(path), load_splits(task, config.train.seed, data_path))


def reward_for(task: Task):
    """Halt/LPRM reward: the task's verifier (any valid answer counts), on the decoded answers."""

    def reward(x: torch.Tensor, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xs, ys = x.cpu().numpy(), y_hat.cpu().numpy()
        return torch.tensor([task.verify(a, b) for a, b in zip(xs, ys)], dtype=torch.float32, device=y_hat.device)

    return reward


def make_evaluator(task: Task, split: Split, width: int, max_inputs: int):
    """Periodic prior-rollout evaluation: the task's metrics on held-out inputs (y never seen)."""
    inputs = split.inputs[:max_inputs]

    def evaluate(gram: GRAM) -> dict:
        x = torch.as_tensor(inputs, device=gram.z0.device)
        final = prior_rollouts(gram, x, num_samples=width).final.cpu().numpy()
        m = task.metrics(inputs, final)
        out = {"prior_acc": m.get("accuracy"), "prior_distinct_valid": m.get("distinct_valid")}
        if "coverage" in m:
            out["prior_coverage"] = m["coverage"]
        return out

    return evaluate


def fit(task: str, out: str | Path, preset: str = "cpu", sets: list[str] = (), mode: str | None = None,
        resume: bool = False, data_path: str | None = None, progress: bool = True, on_batch=None,
        max_cpu_seconds: float | None = None) -> Run:
    """Train a run into folder ``out`` (``gram train``); with ``resume`` continue from its checkpoint.

    ``max_cpu_seconds`` ends training at the first batch boundary past that budget of CPU time.
    """
    out = Path(out)
    task_obj = tasks.get_task(task)
    config = build_run_config(task, task_sizes(task_obj), preset, list(sets), mode)
    if resume:
        saved = RunConfig.from_dict(json.loads((out / "config.json").read_text())) if (out / "config.json").is_file() else None
        if saved is None:
            raise checkpoint.CheckpointError(f"nothing to resume in {out} (no config.json)")
        if saved.identity_hash() != config.identity_hash():
            raise checkpoint.CheckpointError(f"{out} was trained with a different task or model configuration")
    elif (out / "checkpoint.pt").exists():
        raise checkpoint.CheckpointError(f"{out} already holds a run; pass --resume to continue it or choose --out")
    splits = load_splits(task_obj, config.train.seed, data_path, verbose=progress)
    train = splits["train"]
    device = init_from_env(choose_device(config.train.device))
    if world_size_from_env() > 1 and device.type == "cpu":  # share the cores between processes
        torch.set_num_threads(max(1, torch.get_num_threads() // world_size_from_env()))
    torch.manual_seed(config.train.seed)
    gram = GRAM(config.model)
    augment = task_obj.augment if config.train.augment else None
    trainer = Trainer(
        gram, torch.as_tensor(train.x), torch.as_tensor(train.y), config.optim, seed=config.train.seed,
        augment=augment, reward_fn=reward_for(task_obj),
        evaluate=make_evaluator(task_obj, splits["test"], config.train.eval_width, config.train.eval_inputs),
        eval_every=config.train.eval_every, log_path=out / "history.jsonl", checkpoint_path=out / "checkpoint.pt",
        checkpoint_every=config.train.checkpoint_every, config=config.to_dict(), identity=config.identity_hash(),
        on_batch=on_batch, progress=progress, device=device, bf16=config.train.bf16,
        nan_policy=config.train.nan_policy, max_skips=config.train.max_skips)
    if resume:
        trainer.resume()
    if is_main_process():  # only once the configuration has built a trainer (and a resume has succeeded)
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".checkpoint.pt.*.tmp"):  # left by a crash during a checkpoint write
            stale.unlink(missing_ok=True)
        checkpoint.atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
        if not resume:
            (out / "history.jsonl").unlink(missing_ok=True)
    trainer.run(config.train.batches, max_cpu_seconds)
    trainer.finalize()
    return Run(out, config, task_obj, gram, read_history(out), splits)


def evaluate(run: Run, widths=(1, 5, 20), depths=None, halting: bool = False, split: str = "test",
             max_inputs: int | None = None, chunk_size: int = 4096, progress: bool = False,
             tau: float = 1.0) -> list[dict[str, Any]]:
    """Task metrics of prior rollouts for every (depth, width) pair, from one pass at the largest of each,
    sampled at temperature ``tau`` (``gram_pyro.inference.temperature``).

    Besides the task's metrics over all samples, ``vote_acc`` and ``lprm_acc`` are the accuracy of the one
    answer selected per input by majority vote and by the LPRM value (gram-paper.md §3.2).
    """
    widths, depths = sorted(set(widths)), sorted(set(depths or [run.config.model.N_sup]))
    if not widths or widths[0] < 1:
        raise ValueError(f"widths must be integers >= 1, got {widths or 'none'}")
    if not depths or depths[0] < 1:
        raise ValueError(f"depths must be integers >= 1, got {depths or 'none'}")
    if split not in run.splits:
        raise ValueError(f"unknown split {split!r}; this run has {', '.join(run.splits)}")
    if max_inputs is not None and max_inputs < 1:
        raise ValueError(f"max_inputs must be >= 1, got {max_inputs}")
    inputs = run.splits[split].inputs[:max_inputs]
    x = torch.as_tensor(inputs)
    r = prior_rollouts(run.gram, x, num_samples=widths[-1], depth=depths[-1], halting=halting,
                       chunk_size=chunk_size, progress=progress, tau=tau)
    rows = []
    for d in depths:
        step = torch.clamp(r.halt_step, max=d - 1) if halting else torch.full_like(r.halt_step, d - 1)
        answers = torch.gather(r.answers, 2, step[..., None, None].expand(-1, -1, 1, r.answers.shape[-1]))[:, :, 0]
        values = torch.gather(r.value, 2, step[..., None])[..., 0]
        for w in widths:
            picked = {"vote_acc": majority_vote(answers[:, :w]), "lprm_acc": lprm_best(answers[:, :w], values[:, :w])}
            sel = {k: float(np.mean([run.task.verify(a, b) for a, b in zip(inputs, v.numpy())])) for k, v in picked.items()}
            rows.append({"depth": d, "width": w, **run.task.metrics(inputs, answers[:, :w].numpy()), **sel})
    return rows


def sample(run: Run, inputs: np.ndarray, width: int = 20, depth: int | None = None, tau: float = 1.0) -> np.ndarray:
    """Prior samples [len(inputs), width, L_out] for encoded inputs, at temperature ``tau``."""
    x = torch.as_tensor(np.atleast_2d(inputs))
    return prior_rollouts(run.gram, x, num_samples=width, depth=depth, tau=tau).final.numpy()


def read_user_input(text: str) -> str:
    """A command-line INPUT: a path to a text file (not a DIMACS ``.col``, which the task reads itself) is
    replaced by the file's UTF-8 content; anything else is returned as it is."""
    if os.path.isfile(text) and not text.endswith(".col"):
        try:
            with open(text, encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError:
            raise ValueError(f"{text}: not a UTF-8 text file") from None
    return text


def solve(run: Run, user_input: Any, width: int = 20, depth: int | None = None, tau: float = 1.0) -> dict[str, Any]:
    """Distinct valid answers for one user input, with how many trajectories found each."""
    x = run.task.encode_input(user_input)
    draws = sample(run, x, width, depth, tau)[0]
    found: dict[tuple, int] = {}
    invalid = 0
    for y in draws:
        if run.task.verify(x, y):
            key = tuple(run.task.canonical(y).tolist())
            found[key] = found.get(key, 0) + 1
        else:
            invalid += 1
    sols = run.task.solutions(x)
    solutions = sorted(found.items(), key=lambda kv: -kv[1])
    return {"width": width, "invalid": invalid, "total_valid_answers": None if sols is None else len(sols),
            "solutions": [{"answer": run.task.decode_output(np.array(k)), "count": c} for k, c in solutions]}
