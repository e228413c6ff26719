"""Crash-safe checkpoints (gram-paper.md App. B.1: z_0 is part of the checkpoint).

A checkpoint is a dict of tensors and plain containers — model and guide weights (one ``state_dict``:
they live in one module, z_0 included as a buffer), optimiser, scheduler, EMA, counters, RNG states,
the run configuration and its identity hash, and a format version — so ``torch.load(weights_only=True)``
reads it and loading never executes pickled code.  Writes go to a temporary file in the same folder,
are fsynced, then renamed over the old file: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from gram_pyro import files

FORMAT = 1


class CheckpointError(ValueError):
    """A missing, truncated, foreign or mismatched checkpoint: the message is one line."""


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``, else removed.

    ``path`` must pass :func:`gram_pyro.files.output_target`: a symlink is written through (its target is
    replaced), a directory, device, FIFO or socket is refused before the temporary file exists."""
    path = files.output_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, fsync, then rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def load_weights(module: torch.nn.Module, weights: dict, source: str | Path) -> None:
    """``module.load_state_dict(weights)`` with a one-line CheckpointError for weights of another layout."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[1:2]) or str(err).splitlines()[0]
        raise CheckpointError(f"{source}: the weights do not fit this model ({detail[:200]})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSON-lines log, skipping blank lines and a line torn by a crash mid-write."""
    out = []
    text = files.read_limited(path, "history").decode("utf-8", errors="replace")
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def save(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load(path: str | Path, identity: str | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; refuse a wrong format, or a different run identity when ``identity`` is given."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    st = path.stat()
    if not path.is_file():
        raise CheckpointError(f"{path} is {files.kind_of(st.st_mode)}, not a checkpoint file")
    if st.st_size > files.LIMITS["checkpoint"]:
        raise CheckpointError(f"{path} is larger than the {files.show_size(files.LIMITS['checkpoint'])} checkpoint limit")
    try:
        with zipfile.ZipFile(path) as z:  # torch does not check the archive's CRCs: a flipped byte loads silently
            bad = z.testzip()
        if bad is not None:
            raise CheckpointError(f"{path} is corrupted (CRC mismatch in {bad})")
        state = torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:  # truncated, foreign or hostile files: whatever the unpickler raises
        detail = re.sub(r"\x1b\[[0-9;]*m", "", str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise CheckpointError(f"{path} is not a readable gram_pyro checkpoint (truncated or foreign): "
                              f"{detail[:120]}") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is not a gram_pyro checkpoint (no format field)")
    if state["format"] != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state['format']!r}, this version reads {FORMAT!r}")
    if identity is not None and state.get("identity") != identity:
        raise CheckpointError(f"{path} was written for a different task or model configuration "
                              f"(identity {state.get('identity')} != {identity})")
    _check_finite(state, path)
    return state


def _check_finite(state: dict[str, Any], path: Path) -> None:
    """Refuse weights (model or EMA) that hold NaN or inf: they would fail only later, deep inside sampling."""
    for part in ("model", "ema"):
        weights = state.get(part)
        for name, value in weights.items() if isinstance(weights, dict) else ():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{path}: {part} weight {name!r} holds NaN or inf values")
