"""The training loop: deep supervision, EMA, logs, evaluation, checkpoints, resume, multi-process (§2.3, §7).

Per batch the trainer makes one optimiser update per supervision step (N_sup updates; one without deep
supervision), detaching the carry between steps.  All training randomness is a function of the seed
and the counters — batch order (per epoch), augmentation (per batch) and the guide's noise (per update,
:class:`~gram_pyro.update.BatchNoise`) — so a resumed run reproduces an uninterrupted one exactly, and k
processes reproduce one process on the same global batch.  Multi-process training uses
``torch.distributed`` with ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA), launched by
``torchrun``; only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pyro
import torch
import torch.distributed as dist
from tqdm import tqdm

from gram_pyro import checkpoint
from gram_pyro.elbo import full_trajectory_elbo
from gram_pyro.model import GRAM
from gram_pyro.config import OptimConfig, TrainConfig
from gram_pyro.update import EMA, BatchNoise, StepLoss, exact_match, make_optimizer


class NonFiniteError(FloatingPointError, ValueError):
    """The loss or the gradients became NaN/Inf (and the policy says stop, or too many steps were skipped)."""


class _SkipBatch(Exception):
    """Internal: a non-finite update was skipped; abandon the rest of this batch."""


@contextlib.contextmanager
def _rng_kept():
    """Restore the torch, numpy and ``random`` RNG states after the block (``pyro.set_rng_seed`` sets all three)."""
    import random

    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def resolve_device(name: str) -> torch.device:
    """``train.device``: ``auto`` is CUDA when available, else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, :class:`Stream`, counter)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class Stream(enum.IntEnum):
    """The named random streams of a run.  Each draw is seeded by (``train.seed``, stream, counter), so it depends
    on the seed and the counters only: not on the number of processes, nor on a resume (docs/reliability.md,
    "Determinism")."""

    BATCH_ORDER = 1  # the permutation of the training rows, per epoch
    AUGMENT = 2  # the task's augmentation, per batch
    GUIDE_NOISE = 3  # the guide's ε for the whole global batch (BatchNoise), per optimiser update
    EVALUATION = 4  # the prior rollouts of an evaluation, per evaluation


IN_MEMORY = TrainConfig(eval_every=0, checkpoint_every=0, device="cpu")
"""The training settings :class:`Trainer` uses when given none: no periodic evaluation, no periodic checkpoint, and
the CPU (where the caller's tensors are), as before the Trainer took a ``TrainConfig``."""


class Trainer:
    """Train ``gram`` on tensors ``x`` [n, seq_len], ``y`` [n, L_out], built from its configurations.

    ``optim`` (:class:`OptimConfig`) sets the optimiser, batch size and EMA; ``train`` (:class:`TrainConfig`) the
    seed, evaluation and checkpoint cadence, device, bf16 and NaN policy (``train.batches`` is the length
    ``gram train`` asks of :meth:`run`).  Hooks: ``augment(x, y, rng)`` on numpy arrays; ``reward_fn(x, y_hat, y)``
    for the halt/LPRM heads; ``evaluate(gram) -> dict``, called every ``train.eval_every`` batches with the EMA
    weights (prior-rollout metrics); ``on_batch(record)``.  Files: ``log_path`` (JSONL, one record per update and
    per evaluation), ``checkpoint_path`` (written every ``train.checkpoint_every`` batches and at the end), with
    ``config`` and ``identity`` stored in each checkpoint.  ``device`` overrides ``train.device`` (the CLI passes
    each process's own device).
    """

    def __init__(self, gram: GRAM, x: torch.Tensor, y: torch.Tensor, optim: OptimConfig,
                 train: TrainConfig = IN_MEMORY, *, augment: Callable | None = None,
                 reward_fn: Callable = exact_match, evaluate: Callable[[GRAM], dict] | None = None,
                 on_batch: Callable[[dict], None] | None = None, progress: bool = False,
                 log_path: str | Path | None = None, checkpoint_path: str | Path | None = None,
                 config: dict | None = None, identity: str | None = None, device: torch.device | None = None):
        self.device = resolve_device(train.device) if device is None else torch.device(device)
        self.gram = gram.to(self.device)
        self.x, self.y = x, y
        self.oc, self.tc, self.seed = optim, train, train.seed
        self.augment, self.reward_fn, self.evaluate = augment, reward_fn, evaluate
        self.eval_every, self.checkpoint_every = train.eval_every, train.checkpoint_every
        self.log_path = Path(log_path) if log_path else None
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.config, self.identity = config, identity
        self.on_batch, self.progress, self.bf16 = on_batch, progress, train.bf16 and self.device.type == "cuda"
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.global_batch = min(optim.batch_size, len(x))
        if self.global_batch % self.world:
            raise ValueError(f"batch size {self.global_batch} is not divisible by {self.world} processes")
        self.step_loss = StepLoss(self.gram, gram.cfg.alpha)
        self.module = self.step_loss
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = torch.nn.parallel.DistributedDataParallel(self.step_loss, device_ids=ids)
        self.updates_per_batch = gram.cfg.N_sup if gram.cfg.deep_supervision else 1
        self.opt, self.sched = make_optimizer(self.gram, optim, train.batches * self.updates_per_batch)
        self.ema = EMA(self.gram, optim.ema_decay) if optim.ema_decay > 0 else None
        self.batch = 0  # batches completed
        self.step = 0  # optimiser updates completed
        self.batch_records: list[dict] = []
        self.nan_policy, self.max_skips, self.skipped = train.nan_policy, train.max_skips, 0

    # ------------------------------------------------------------------ data
    def batch_rows(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rows of global batch ``b``: a seeded permutation per epoch, augmentation per batch."""
        n, B = len(self.x), self.global_batch
        per_epoch = n // B
        epoch, i = divmod(b, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(self.seed, Stream.BATCH_ORDER, epoch)))
        idx = perm[i * B : (i + 1) * B]
        xb, yb = self.x[idx], self.y[idx]
        if self.augment is not None:
            xa, ya = self.augment(xb.numpy(), yb.numpy(), np.random.default_rng([self.seed, Stream.AUGMENT, b]))
            xb, yb = torch.as_tensor(xa), torch.as_tensor(ya)
        local = B // self.world
        rows = slice(self.rank * local, (self.rank + 1) * local)
        return xb[rows].to(self.device), yb[rows].to(self.device)

    # ------------------------------------------------------------------ training
    def _update(self, xb, yb, carry, n: int):
        t0, c0 = time.perf_counter(), time.process_time()
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, Stream.GUIDE_NOISE, self.step))
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with BatchNoise(gen, self.global_batch, self.rank * len(xb)), autocast:
            loss, stats, carry, _ = self.module(xb, yb, carry, n, self.reward_fn)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # always: under DDP the all-reduce spreads a NaN, so every process decides alike
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.gram.parameters(), self.oc.clip))
        if not (math.isfinite(stats["grad_norm"]) and math.isfinite(float(loss.detach()))):
            self._non_finite(n)
        stats["lr"] = self.sched.get_last_lr()[0]
        self.opt.step()
        if self.gram.puzzle_embedding is not None:  # sparse sign-SGD on this batch's rows, same warm-up
            scale = stats["lr"] / self.oc.lr
            self.gram.puzzle_embedding.step(self.oc.puzzle_lr * scale, self.oc.puzzle_weight_decay)
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.gram)
        if self.world > 1:  # log global means, as one process would
            vals = torch.tensor([stats[k] for k in ("loss", "nll", "kl", "aux", "posterior_acc")], dtype=torch.float64)
            dist.all_reduce(vals)
            stats.update(zip(("loss", "nll", "kl", "aux", "posterior_acc"), (vals / self.world).tolist()))
        self.step += 1
        stats["seconds"], stats["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
        return carry, stats

    def _non_finite(self, n: int) -> None:
        """Stop with a clear error (policy ``stop``), or skip the update and the rest of its batch (``skip``)."""
        where = f"update {self.step} (batch {self.batch}, supervision step {n})"
        self.opt.zero_grad(set_to_none=True)
        if self.gram.puzzle_embedding is not None:
            self.gram.puzzle_embedding.discard()
        if self.nan_policy == "stop":
            raise NonFiniteError(f"non-finite loss or gradient at {where}; the last checkpoint is intact")
        self.skipped += 1
        if self.skipped > self.max_skips:
            raise NonFiniteError(f"non-finite loss or gradient at {where}: more than {self.max_skips} skipped updates")
        warnings.warn(f"skipped a non-finite update at {where} ({self.skipped}/{self.max_skips})", RuntimeWarning)
        self._log({"kind": "skip", "step": self.step, "batch": self.batch, "n": n})
        self.step += 1  # the noise of the next update differs from the skipped one
        raise _SkipBatch

    def run(self, num_batches: int, max_cpu_seconds: float | None = None) -> None:
        """Train until ``num_batches`` batches are complete in total (a resumed run continues the count).

        ``max_cpu_seconds`` stops earlier, at the first batch boundary past that budget of this process's
        CPU time spent on training updates (all threads; unlike wall time it does not shrink when other work
        shares the machine; periodic evaluations and checkpoints are not charged to it) — benchmarks compare
        models at equal training budget.  The final evaluation and checkpoint still happen.
        """
        self.gram.train()
        spent = 0.0
        bar = tqdm(total=num_batches, initial=self.batch, desc="train", disable=not self.progress or self.rank)
        while self.batch < num_batches:
            xb, yb = self.batch_rows(self.batch)
            carry, recs, t0, c0 = None, [], time.perf_counter(), time.process_time()
            try:
                for n in range(self.updates_per_batch):
                    carry, stats = self._update(xb, yb, carry, n)
                    rec = {"kind": "train", "step": self.step - 1, "batch": self.batch, "n": n,
                           "beta": self.gram.cfg.beta, **stats}
                    recs.append(rec)
                    self._log(rec)
            except _SkipBatch:
                if not recs:
                    spent += time.process_time() - c0
                    self.batch += 1
                    bar.update(1)
                    continue
            summary = {"batch": self.batch, "seconds": time.perf_counter() - t0,
                       **{k: float(np.mean([r[k] for r in recs])) for k in ("loss", "nll", "kl", "aux", "grad_norm")},
                       "final_posterior_acc": recs[-1]["posterior_acc"]}
            self.batch_records.append(summary)
            self.batch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{summary['loss']:.4f}", kl=f"{summary['kl']:.4f}")
            if self.on_batch is not None and self.rank == 0:
                self.on_batch(summary)
            spent += time.process_time() - c0
            if max_cpu_seconds is not None and spent > max_cpu_seconds:
                num_batches = self.batch
            last = self.batch == num_batches
            # the checkpoint first: an evaluation that fails (memory, a bad evaluator) cannot lose trained batches;
            # the evaluation restores the RNG state it seeds, so a run resumed from this checkpoint continues exactly
            if self.checkpoint_path and (last or (self.checkpoint_every and self.batch % self.checkpoint_every == 0)):
                self.save()
            if self.evaluate is not None and (last or (self.eval_every and self.batch % self.eval_every == 0)):
                self.eval_record()
        bar.close()
        self.gram.eval()

    # ------------------------------------------------------------------ evaluation
    @contextlib.contextmanager
    def ema_weights(self):
        """Temporarily load the EMA weights into the model (a no-op without EMA)."""
        if self.ema is None:
            yield
            return
        backup = {k: v.clone() for k, v in self.gram.state_dict().items()}
        self.ema.copy_to(self.gram)
        try:
            yield
        finally:
            self.gram.load_state_dict(backup)

    def eval_record(self) -> dict:
        """Prior-rollout metrics (``evaluate``) and the full ELBO (Eq. 13) next to the surrogate, rank 0 only."""
        if self.rank:
            return {}
        rec = {"kind": "eval", "step": self.step, "batch": self.batch - 1}
        with _rng_kept():  # the evaluation's own seed; training continues from the RNG state saved just before
            pyro.set_rng_seed(derive_seed(self.seed, Stream.EVALUATION, self.step) % 2**32)
            self._evaluate_into(rec)
        self._log(rec)
        return rec

    def _evaluate_into(self, rec: dict) -> None:
        """Fill ``rec`` with the full ELBO of the first training rows and the prior-rollout metrics (EMA weights)."""
        self.gram.eval()
        with self.ema_weights(), torch.no_grad():
            rows = slice(0, min(64, len(self.x)))
            full = full_trajectory_elbo(self.gram, self.x[rows].to(self.device), self.y[rows].to(self.device))
            rec.update(elbo_full=full["elbo"], elbo_surrogate=full.get("surrogate"),
                       kl_per_transition=full["kl_per_transition"])
            rec.update(self.evaluate(self.gram))
        self.gram.train()

    def _log(self, rec: dict) -> None:
        if self.log_path is not None and self.rank == 0:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "identity": self.identity, "config": self.config, "batch": self.batch, "step": self.step,
            "model": self.gram.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "ema": None if self.ema is None else self.ema.shadow,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def save(self) -> None:
        if self.rank == 0:
            checkpoint.save(self.checkpoint_path, self.state_dict())

    def resume(self, path: str | Path | None = None) -> None:
        """Load a checkpoint and drop log lines written after it (they are replayed exactly)."""
        self.load_state(path)
        self.trim_log()

    def load_state(self, path: str | Path | None = None) -> None:
        """Load and check a checkpoint's training state; writes no file (``gram train --resume`` checks
        everything before it touches the run folder)."""
        path = path or self.checkpoint_path
        state = checkpoint.load(path, identity=self.identity, map_location=self.device)
        try:
            checkpoint.load_weights(self.gram, state["model"], path)
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            if self.ema is not None and state["ema"] is not None:
                self.ema.shadow = {k: v.to(self.device) for k, v in state["ema"].items()}
            self.batch, self.step = int(state["batch"]), int(state["step"])
            torch.set_rng_state(state["rng"]["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            if isinstance(err, checkpoint.CheckpointError):
                raise
            raise checkpoint.CheckpointError(f"{path}: incomplete or incompatible training state "
                                             f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        if state["rng"].get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def trim_log(self) -> None:
        """Drop the log lines of batches after the loaded checkpoint (they are replayed exactly) and torn lines."""
        if self.log_path is not None and self.log_path.exists() and self.rank == 0:
            kept = [r for r in checkpoint.read_jsonl(self.log_path) if r.get("batch", -1) < self.batch]
            checkpoint.atomic_write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in kept))

    def finalize(self) -> None:
        """Leave the EMA weights in the model (what evaluation and the final checkpoint's users see)."""
        if self.ema is not None:
            self.ema.copy_to(self.gram)
        self.gram.eval()


def fit(gram: GRAM, x: torch.Tensor, y: torch.Tensor, num_batches: int, oc: OptimConfig = OptimConfig(),
        augment: Callable | None = None, on_log: Callable[[dict], None] | None = None, seed: int = 0,
        reward_fn: Callable = exact_match) -> list[dict]:
    """Train in memory (no files) for ``num_batches`` batches; returns one summary record per batch.

    ``augment(x, y, rng) -> (x, y)`` on numpy arrays; ``on_log(record)`` sees every batch summary.  The
    model holds the EMA weights afterwards when ``oc.ema_decay`` > 0.
    """
    train = dataclasses.replace(IN_MEMORY, seed=seed, batches=max(1, num_batches))  # a cosine decay's span
    trainer = Trainer(gram, x, y, oc, train, augment=augment, reward_fn=reward_fn, on_batch=on_log)
    trainer.run(num_batches)
    trainer.finalize()
    return trainer.batch_records
