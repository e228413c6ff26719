"""The run-folder rule of ``gram train --out DIR`` (docs/reliability.md, "Run folders").

* **What a run is.**  A folder is a run when it holds the marker ``.gram-run.json`` (written by ``gram train``
  before anything else of the run) or, for runs from before the marker, both ``config.json`` and
  ``checkpoint.pt``.  The marker records the task, ``train.seed`` and the ``--data`` file's digest.
* **What ``gram train`` may overwrite.**  Without ``--resume``: nothing of a run that has a checkpoint; the
  ``config.json``/``history.jsonl`` of a run gram started but that has no checkpoint yet; and never a
  ``config.json``, ``history.jsonl`` or ``checkpoint.pt`` in a folder that is not a run (they are someone's
  own files).  Each run file that exists must be a regular file (or a symlink to one, written through).
* **Resume.**  ``--resume`` refuses a change to the keys that define the data (``DATA_KEYS``: the seed picks
  the split; the ``--data`` file is its content) and to the task or model (the checkpoint identity).
* **One writer.**  The process that writes a run holds an exclusive lock on ``DIR/.gram.lock``
  (:func:`gram_pyro.files.run_lock`) and checks the folder again once it holds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gram_pyro import checkpoint, files
from gram_pyro.runconfig import ConfigError, RunConfig

MARKER = ".gram-run.json"
RUN_FILES = ("config.json", "history.jsonl", "checkpoint.pt")
DATA_KEYS = ("train.seed",)  # with the task (part of the identity) and the --data file they fix the splits


def _present(out: Path) -> list[str]:
    """The run files (and marker) present in ``out``; each must be a regular file or a link to one."""
    names = [n for n in (*RUN_FILES, MARKER) if os.path.lexists(out / n)]
    for name in names:
        files.output_target(out / name)
    return names


def read_marker(out: Path) -> dict:
    """The marker's record, or {} when the run has none (a run from before the marker)."""
    if not os.path.lexists(out / MARKER):
        return {}
    try:
        rec = json.loads(files.read_limited(out / MARKER, "config").decode("utf-8"))
    except (ValueError, RecursionError):
        raise checkpoint.CheckpointError(f"{out / MARKER} is not valid JSON (a damaged run marker)") from None
    if not isinstance(rec, dict):
        raise checkpoint.CheckpointError(f"{out / MARKER} is not a gram run marker")
    return rec


def check(out: Path, config: RunConfig, resume: bool, digest: str | None, read_config) -> None:
    """Refuse, before any file is touched, a ``gram train`` that the rule above forbids."""
    if os.path.lexists(out) and not out.is_dir():
        raise files.FileRuleError(f"--out {out} exists and is not a folder")
    files.output_folder(out)
    present = _present(out) if out.is_dir() else []
    marker = read_marker(out) if MARKER in present else {}
    if resume:
        if "config.json" not in present:
            raise checkpoint.CheckpointError(f"nothing to resume in {out} (no config.json)")
        saved = read_config(out)
        if saved.identity_hash() != config.identity_hash():
            raise checkpoint.CheckpointError(f"{out} was trained with a different task or model configuration")
        for key in DATA_KEYS:
            section, name = key.split(".")
            old, new = getattr(getattr(saved, section), name), getattr(getattr(config, section), name)
            if old != new:
                raise ConfigError(f"--resume cannot change {key} ({old} -> {new}): it defines the run's data "
                                  "split; train a new run instead")
        if marker and marker.get("data") != digest:
            raise ConfigError(f"--resume must read the same --data file as the run (digest {marker.get('data')}, "
                              f"got {digest}): it defines the run's data split")
        return
    if "checkpoint.pt" in present:
        raise checkpoint.CheckpointError(f"{out} already holds a run; pass --resume to continue it or choose --out")
    foreign = [n for n in RUN_FILES if n in present]
    if foreign and not marker:
        raise files.FileRuleError(f"{out} holds {', '.join(foreign)} that gram did not write (no {MARKER}); "
                                  "choose another --out")


def write_marker(out: Path, config: RunConfig, digest: str | None) -> None:
    """Mark ``out`` as a run of this task, seed and data file (written first, before the run's other files)."""
    rec = {"format": 1, "task": config.task, "seed": config.train.seed, "data": digest}
    checkpoint.atomic_write_text(out / MARKER, json.dumps(rec) + "\n")
