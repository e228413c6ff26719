"""Python API mirroring the CLI: ``fit``, ``evaluate``, ``sample``, ``load_run`` (the wiring layer).

This package (``gram_cli``) is the only place that joins the model core, the tasks and the
analysis.  A run folder holds ``config.json`` (the resolved :class:`RunConfig`), ``history.jsonl`` (one
record per update and per evaluation), ``checkpoint.pt`` (crash-safe, see ``gram_pyro.checkpoint``), the
marker ``.gram-run.json`` and the lock file ``.gram.lock`` (the run-folder rule: ``gram_cli.runfolder``).
Datasets are built once and cached as ``.npz`` under ``$GRAM_CACHE`` (default ``~/.cache/gram_pyro``).
"""

from __future__ import annotations

import dataclasses
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
from tqdm import tqdm

import gram_tasks as tasks
from gram_pyro import checkpoint, files, validation
from gram_cli import runfolder
from gram_pyro.distributed import init_from_env, is_main_process, world_size_from_env
from gram_pyro.inference import lprm_best, majority_vote, prior_rollouts
from gram_pyro.baselines import build_model
from gram_pyro.model import GRAM
from gram_pyro.runconfig import ConfigError, RunConfig, build_run_config
from gram_pyro.trainer import Trainer, resolve_device
from gram_tasks import Split, Task, TaskInputError


# ------------------------------------------------------------------ data
def cache_dir() -> Path:
    return Path(os.environ.get("GRAM_CACHE", Path.home() / ".cache" / "gram_pyro"))


def data_digest(task: Task, data_path: str | None) -> str | None:
    """12 hex digits of the SHA-256 of a ``--data`` file (it defines the splits), or None without one."""
    if data_path is None:
        return None
    if not hasattr(task, "build_from_file"):
        raise TaskInputError(f"task {task.name} does not read data files")
    if not os.path.lexists(data_path):
        raise TaskInputError(f"data file not found: {data_path}")
    return hashlib.sha256(files.read_limited(data_path, "data")).hexdigest()[:12]


def load_splits(task: Task, seed: int = 0, data_path: str | None = None, verbose: bool = False) -> dict[str, Split]:
    """A task's splits, built once per (task, seed, data file) and cached on disk; a cache entry whose
    contents do not fit the task (shapes, dtypes, token range) is rebuilt."""
    digest = data_digest(task, data_path)
    key = f"{task.name}-seed{seed}" + (f"-{digest}" if digest else "")
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        try:
            return _read_splits(path, task)
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


def _read_splits(path: Path, task: Task) -> dict[str, Split]:
    """A cache entry's splits; ValueError when its size, dtypes, shapes or token range do not fit ``task``."""
    if not path.is_file() or path.stat().st_size > files.LIMITS["cache"]:
        raise ValueError(f"{path}: not a regular file within the cache size limit")
    with np.load(path, allow_pickle=False) as z:
        out = {}
        for name in z["splits"].tolist():
            sols = None
            if f"{name}/sol_counts" in z:
                counts = z[f"{name}/sol_counts"]
                _check_tokens(task, z[f"{name}/sol"], task.out_len)
                if counts.ndim != 1 or counts.dtype.kind not in "iu" or (counts < 0).any() \
                        or counts.sum() != len(z[f"{name}/sol"]):
                    raise ValueError(f"{path}: bad solution counts in split {name!r}")
                sols = np.split(z[f"{name}/sol"], np.cumsum(counts)[:-1])
            out[name] = Split(z[f"{name}/x"], z[f"{name}/y"], z[f"{name}/group"], z[f"{name}/inputs"], sols)
            _check_split(task, out[name], f"{path}: split {name!r}")
        return out


def _check_tokens(task: Task, a: np.ndarray, width: int) -> None:
    if a.dtype.kind not in "iu" or a.ndim != 2 or a.shape[1] != width:
        raise ValueError(f"cache array of dtype {a.dtype} and shape {a.shape}, expected integers [n, {width}]")
    if a.size and (a.min() < 0 or a.max() >= task.vocab_size):
        raise ValueError(f"cache tokens outside 0..{task.vocab_size - 1}")


def _check_split(task: Task, s: Split, where: str) -> None:
    """Raise ValueError unless split ``s`` has the task's shapes, integer tokens in its vocabulary and
    consistent groups (the dataset cache is read back from disk, where anything can change it)."""
    _check_tokens(task, s.x, task.seq_len)
    _check_tokens(task, s.y, task.out_len)
    _check_tokens(task, s.inputs, task.seq_len)
    g = s.group
    if g.dtype.kind not in "iu" or g.shape != (len(s.x),) or (g.size and (g.min() < 0 or g.max() >= len(s.inputs))):
        raise ValueError(f"{where}: groups do not index its inputs")
    if len(s.y) != len(s.x) or not len(s.inputs) or (s.solutions is not None and len(s.solutions) != len(s.inputs)):
        raise ValueError(f"{where}: inconsistent lengths")


def task_sizes(task: Task) -> dict[str, int]:
    """The model sizes a task fixes: vocabulary, lengths and, for ARC, its puzzle identifiers (§1.4)."""
    sizes = {"vocab_size": task.vocab_size, "seq_len": task.seq_len, "out_len": task.out_len}
    return {**sizes, "num_puzzles": task.num_puzzles} if hasattr(task, "num_puzzles") else sizes


def with_pair_structure(config: RunConfig, task: Task) -> RunConfig:
    """With ``model.pair_bias=true`` and no ``model.pair_tokens`` given, fill them and ``pair_token_value`` from
    the task's ``pair_structure()`` (the attention link bias, gram_pyro/pair_bias.py; issue 16)."""
    m = config.model
    if not m.pair_bias or m.pair_tokens:
        return config
    if not hasattr(task, "pair_structure"):
        raise ConfigError(f"model.pair_bias=true, but task {task.name} states no pair structure")
    links, token = task.pair_structure()
    try:
        return dataclasses.replace(config, model=m.replace(pair_tokens=tuple(links), pair_token_value=int(token)))
    except ValueError as err:
        raise ConfigError(f"model: {str(err).splitlines()[0]}") from None


def choose_device(name: str) -> torch.device:
    """``train.device`` resolved (gram_pyro.trainer.resolve_device), or a one-line configuration error."""
    try:
        return resolve_device(name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


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


def read_config(path: Path) -> RunConfig:
    """The RunConfig of run folder ``path``: ``config.json`` read with the size limit, every value of its
    field's type and within the limits (docs/reliability.md, "Limits")."""
    file = path / "config.json"
    if not os.path.lexists(file):
        raise checkpoint.CheckpointError(f"{path} is not a run folder (no config.json)")
    try:
        data = json.loads(files.read_limited(file, "config").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise checkpoint.CheckpointError(f"{file} is not valid JSON: {err}") from None
    except RecursionError:
        raise checkpoint.CheckpointError(f"{file} is not valid JSON: nested too deeply") from None
    return RunConfig.from_dict(data, source=str(file))


def load_run(path: str | Path, data_path: str | None = None, device: str = "cpu") -> Run:
    path = Path(path)
    config = read_config(path)
    state = checkpoint.load(path / "checkpoint.pt", identity=config.identity_hash())
    gram = build_model(config.model)
    weights = state.get("ema") if state.get("ema") is not None else state.get("model")
    checkpoint.load_weights(gram, weights if isinstance(weights, dict) else {}, path / "checkpoint.pt")
    gram.to(choose_device(device)).eval()
    task = tasks.get_task(config.task)
    return Run(path, config, task, gram, read_history(path), load_splits(task, config.train.seed, data_path))


def reward_for(task: Task):
    """Halt/LPRM reward: the task's verifier (any valid answer counts), on the decoded answers."""

    def reward(x: torch.Tensor, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xs, ys = x.cpu().numpy(), y_hat.cpu().numpy()
        return torch.tensor(task.validity(xs, ys[:, None])[:, 0], dtype=torch.float32, device=y_hat.device)

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
        out.update({f"prior_{k}": m[k] for k in ("pass@1", "pass@2") if k in m})  # ARC (tasks/arc.py)
        return out

    return evaluate


def fit(task: str, out: str | Path, preset: str = "cpu", sets: list[str] = (), mode: str | None = None,
        resume: bool = False, data_path: str | None = None, progress: bool = True, on_batch=None,
        max_cpu_seconds: float | None = None) -> Run:
    """Train a run into folder ``out`` (``gram train``); with ``resume`` continue from its checkpoint.

    ``max_cpu_seconds`` ends training at the first batch boundary past that budget of CPU time.  Everything
    (configuration, data file, run folder, and with ``resume`` the checkpoint) is checked before any file of
    the run folder is touched; the folder is then locked while this process writes it (gram_cli.runfolder).
    """
    out = Path(out)
    task_obj = tasks.get_task(task)
    config = with_pair_structure(build_run_config(task, task_sizes(task_obj), preset, list(sets), mode), task_obj)
    digest = data_digest(task_obj, data_path)
    runfolder.check(out, config, resume, digest, read_config)
    splits = load_splits(task_obj, config.train.seed, data_path, verbose=progress)
    train = splits["train"]
    device = init_from_env(choose_device(config.train.device))
    if world_size_from_env() > 1 and device.type == "cpu":  # share the cores between processes
        torch.set_num_threads(max(1, torch.get_num_threads() // world_size_from_env()))
    torch.manual_seed(config.train.seed)
    gram = build_model(config.model)
    augment = task_obj.augment if config.train.augment else None
    trainer = Trainer(
        gram, torch.as_tensor(train.x), torch.as_tensor(train.y), config.optim, config.train, augment=augment,
        reward_fn=reward_for(task_obj),
        evaluate=make_evaluator(task_obj, splits["test"], config.train.eval_width, config.train.eval_inputs),
        on_batch=on_batch, progress=progress, log_path=out / "history.jsonl", checkpoint_path=out / "checkpoint.pt",
        config=config.to_dict(), identity=config.identity_hash(), device=device)
    if resume:
        trainer.load_state()  # reads and checks the checkpoint; writes nothing
    if not is_main_process():  # only rank 0 writes the run folder
        trainer.run(config.train.batches, max_cpu_seconds)
        trainer.finalize()
        return Run(out, config, task_obj, gram, read_history(out), splits)
    out.mkdir(parents=True, exist_ok=True)
    with files.run_lock(out):
        runfolder.check(out, config, resume, digest, read_config)  # again: another process may have written it
        for stale in out.glob(".checkpoint.pt.*.tmp"):  # left by a crash during a checkpoint write
            stale.unlink(missing_ok=True)
        runfolder.write_marker(out, config, digest)
        checkpoint.atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
        if resume:
            trainer.trim_log()
        else:
            (out / "history.jsonl").unlink(missing_ok=True)
        trainer.run(config.train.batches, max_cpu_seconds)
        trainer.finalize()
    return Run(out, config, task_obj, gram, read_history(out), splits)


def evaluate(run: Run, widths=(1, 5, 20), depths=None, halting: bool = False, split: str = "test",
             max_inputs: int | None = None, chunk_size: int | None = None, progress: bool = False,
             tau: float = 1.0) -> list[dict[str, Any]]:
    """Task metrics of prior rollouts for every (depth, width) pair, from one pass at the largest of each,
    sampled at temperature ``tau`` (``gram_pyro.inference.temperature``).

    Besides the task's metrics over all samples, ``vote_acc`` and ``lprm_acc`` are the accuracy of the one
    answer selected per input by majority vote and by the LPRM value (gram-paper.md §3.2), and for graph colouring
    ``vote_conflicts`` / ``lprm_conflicts`` that answer's conflict edges summed over the inputs.  Inputs are rolled
    out in groups of at most ``EVAL_TRAJECTORIES`` trajectories and only the answers at the requested depths
    are kept, so memory is bounded by the rollout chunk budget (``gram_pyro.inference.rows_per_chunk``,
    ``chunk_size`` trajectories at a time) plus the [inputs, width, L_out] answers, not by every step's.
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
    validation.check_rollout(len(inputs), widths[-1], depths[-1], run.config.model.L_out, "evaluation")
    x = torch.as_tensor(inputs)
    group = max(1, EVAL_TRAJECTORIES // widths[-1])
    kept: dict[int, list] = {d: [] for d in depths}
    for i in tqdm(range(0, len(x), group), desc="rollouts", disable=not progress or len(x) <= group):
        r = prior_rollouts(run.gram, x[i : i + group], num_samples=widths[-1], depth=depths[-1], halting=halting,
                           chunk_size=chunk_size, tau=tau)
        for d in depths:
            step = torch.clamp(r.halt_step, max=d - 1) if halting else torch.full_like(r.halt_step, d - 1)
            ans = torch.gather(r.answers, 2, step[..., None, None].expand(-1, -1, 1, r.answers.shape[-1]))[:, :, 0]
            kept[d].append((ans, torch.gather(r.value, 2, step[..., None])[..., 0]))
    rows = []
    for d in depths:
        answers, values = (torch.cat(parts) for parts in zip(*kept[d]))
        for w in widths:
            picked = {"vote": majority_vote(answers[:, :w]), "lprm": lprm_best(answers[:, :w], values[:, :w])}
            rows.append({"depth": d, "width": w, **run.task.metrics(inputs, answers[:, :w].numpy()),
                         **_selected_metrics(run.task, inputs, picked)})
    return rows


def _selected_metrics(task: Task, inputs: np.ndarray, picked: dict[str, torch.Tensor]) -> dict[str, float]:
    """``{name}_acc`` (validity) of each selected answer per input, and ``{name}_conflicts`` (conflict edges
    summed over the inputs, the Table 1 metric of a selected answer) where the task counts them."""
    out = {}
    for name, answer in picked.items():
        one = answer.numpy()[:, None]
        out[f"{name}_acc"] = float(task.validity(inputs, one).mean())
        if hasattr(task, "conflict_edges"):
            out[f"{name}_conflicts"] = float(task.conflict_edges(inputs, one).sum())
    return out


EVAL_TRAJECTORIES = 2048
"""Trajectories (inputs × width) per rollout call of :func:`evaluate`: each call holds every step's answers."""


def sample(run: Run, inputs: np.ndarray, width: int = 20, depth: int | None = None, tau: float = 1.0) -> np.ndarray:
    """Prior samples [len(inputs), width, L_out] for encoded inputs, at temperature ``tau``."""
    x = torch.as_tensor(np.atleast_2d(inputs))
    validation.check_rollout(len(x), width, run.config.model.N_sup if depth is None else depth,
                             run.config.model.L_out, "sampling")
    return prior_rollouts(run.gram, x, num_samples=width, depth=depth, tau=tau).final.numpy()


def read_user_input(text: str, task: Task | None = None) -> Any:
    """A command-line INPUT.  The rule: an INPUT that names an existing path is a file, read with the input
    size limit (a device, FIFO or folder is refused), and is replaced by its UTF-8 content; anything else is
    the input itself.  The task reads a file's content (``Task.read_input_file``): for the graph-colouring tasks
    it is DIMACS text, parsed with the file's name in messages (whatever its suffix); an INPUT string is DIMACS
    text when it holds a line break."""
    if not os.path.lexists(text):
        return text
    raw = files.read_limited(text, "input")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{text}: not a UTF-8 text file") from None
    return content if task is None else task.read_input_file(content, text)


def solve(run: Run, user_input: Any, width: int = 20, depth: int | None = None, tau: float = 1.0) -> dict[str, Any]:
    """Distinct valid answers for one user input, with how many trajectories found each."""
    x = run.task.encode_input(user_input)
    found, invalid = run.task.answer_counts(x, sample(run, x, width, depth, tau)[0])
    sols = run.task.solutions(x)
    return {"width": width, "invalid": invalid, "total_valid_answers": None if sols is None else len(sols),
            "solutions": [{"answer": run.task.decode_output(a), "count": c} for a, c in found]}
