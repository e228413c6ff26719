"""Run configuration: model, optimiser and training settings, YAML/JSON presets and ``--set`` overrides.

A run preset is a YAML or JSON file with up to three sections::

    model: {preset: cpu, beta: 0.3}        # a GRAMConfig preset name plus GRAMConfig keys
    optim: {preset: cpu, lr: 0.003}        # an OPTIM_PRESETS name plus OptimConfig keys
    train: {batches: 300, eval_every: 50}  # TrainConfig keys

Presets ship in ``gram_pyro/configs/`` (``gram tasks`` lists them); a path to a user file works too.
``model.beta: paper`` selects the paper's β for the run's task (gram-paper.md §2.4).  Overrides are
``section.key=value`` strings, converted to the field's type; an unknown key or a value of the wrong
type raises ``ConfigError`` with a one-line message.  Task sizes (vocabulary, lengths) come from the task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gram_pyro.config import GRAMConfig, paper_beta, preset
from gram_pyro.train import OPTIM_PRESETS, OptimConfig

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A bad preset, key or value: the message is one line."""


@dataclass(frozen=True)
class TrainConfig:
    """Training-loop settings: length, evaluation and checkpoint cadence, seed and device."""

    batches: int = 200  # each batch is N_sup optimiser updates (one per supervision step)
    eval_every: int = 50  # batches between prior-rollout evaluations (0 = only at the end)
    eval_width: int = 20  # trajectories per input in those evaluations
    eval_inputs: int = 200  # held-out inputs used in those evaluations
    checkpoint_every: int = 50  # batches between checkpoints (one is always written at the end)
    augment: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # bf16 autocast, CUDA only
    nan_policy: str = "stop"  # on a NaN/Inf loss or gradient: stop (last checkpoint intact) or skip the update
    max_skips: int = 10  # with nan_policy=skip: stop after this many skipped updates


@dataclass(frozen=True)
class RunConfig:
    task: str
    model: GRAMConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model": _plain(self.model), "optim": _plain(self.optim), "train": _plain(self.train)}

    def identity_hash(self) -> str:
        """Hash of what a checkpoint's weights depend on (task and model); training length may change."""
        blob = json.dumps({"task": self.task, "model": _plain(self.model)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "RunConfig":
        try:
            model = GRAMConfig(**_tuples(GRAMConfig, d["model"]))
            return RunConfig(d["task"], model, OptimConfig(**_tuples(OptimConfig, d["optim"])),
                             TrainConfig(**d["train"]))
        except (KeyError, TypeError) as err:
            raise ConfigError(f"malformed run configuration: {err}") from None


def _plain(obj) -> dict[str, Any]:
    return {k: list(map(list, v)) if k == "prior_args" else (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(obj).items()}


def _tuples(cls, d: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the frozen dataclasses hold."""
    hints = typing.get_type_hints(cls)
    out = dict(d)
    for k, v in d.items():
        if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
            out[k] = tuple(tuple(i) if isinstance(i, list) else i for i in v)
    return out


def list_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> dict[str, dict[str, Any]]:
    """Read a run preset by name (``gram_pyro/configs/NAME.yaml``) or path (.yaml/.yml/.json)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {name_or_path!r}; known: {', '.join(list_presets())}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"preset file not found: {path}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse preset {path}: {str(err).splitlines()[0]}") from None
    data = data or {}
    if not isinstance(data, dict) or set(data) - {"model", "optim", "train"}:
        raise ConfigError(f"preset {path}: top-level keys must be among model, optim, train")
    for k, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"preset {path}: section {k!r} must be a mapping of keys to values")
    return {k: dict(data.get(k) or {}) for k in ("model", "optim", "train")}


_SECTIONS = {"model": GRAMConfig, "optim": OptimConfig, "train": TrainConfig}
_SIZES = ("vocab_size", "seq_len", "out_len")


def _coerce(key: str, value: Any, hint) -> Any:
    """Convert a preset or command-line value to the field's type, or raise a one-line ConfigError."""
    text = str(value).strip()
    origin = typing.get_origin(hint)
    if origin in (typing.Union, __import__("types").UnionType):
        if text.lower() in ("none", "null"):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, float) or isinstance(value, bool):
                raise ValueError
            return int(text)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(text)
        if hint is str:
            return text
        if origin is tuple:
            items = value if isinstance(value, (list, tuple)) else [s for s in text.split(",") if s]
            if key.rsplit(".", 1)[-1] == "prior_args":  # "df=3,scale=2" or a mapping
                items = value.items() if isinstance(value, dict) else [s.split("=", 1) for s in items]
                if any(len(kv) != 2 or not str(kv[0]).isidentifier() for kv in items):
                    raise ValueError
                return tuple((str(k), _number(v)) for k, v in items)
            return tuple(float(i) for i in items)
    except (ValueError, TypeError):
        pass
    kind = "name=value pairs" if key.endswith("prior_args") else getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key {key} expects {kind}, got {value!r}")


def _number(v: Any) -> Any:
    try:
        return int(v) if str(v).lstrip("-").isdigit() else float(v)
    except ValueError:
        return v


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``["model.D=64", "train.batches=10"]`` -> ``{"model": {"D": "64"}, "train": {"batches": "10"}}``."""
    out: dict[str, dict[str, str]] = {k: {} for k in _SECTIONS}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {pair!r} must look like section.key=value (sections: model, optim, train)")
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in {pair!r}; use model, optim or train")
        out[section][name] = value
    return out


def build_run_config(task: str, sizes: dict[str, int], preset_name: str = "cpu", overrides: list[str] = (),
                     mode: str | None = None) -> RunConfig:
    """Preset file + overrides + task sizes -> a validated RunConfig."""
    data = load_preset(preset_name)
    for section, values in parse_overrides(list(overrides)).items():
        data[section].update(values)
    if mode is not None:
        data["model"]["mode"] = mode
    sections = {}
    for section, cls in _SECTIONS.items():
        values = dict(data[section])
        base = values.pop("preset", None) if section in ("model", "optim") else None
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in fields or (section == "model" and key in _SIZES):
                raise ConfigError(f"unknown config key {section}.{key if key.isidentifier() else repr(key)}")
        if section == "model" and str(values.get("beta", "")).lower() == "paper":
            if paper_beta(task) is None:
                raise ConfigError(f"the paper gives no beta for task {task!r}; set model.beta to a number")
            values["beta"] = paper_beta(task)
        typed = {k: _coerce(f"{section}.{k}", v, hints[k]) for k, v in values.items()}
        try:
            if section == "model":
                sections[section] = preset(base or "cpu", **{**typed, **sizes})
            elif section == "optim":
                if base is not None and base not in OPTIM_PRESETS:
                    raise ConfigError(f"unknown optimiser preset {base!r}; known: {', '.join(OPTIM_PRESETS)}")
                sections[section] = dataclasses.replace(OPTIM_PRESETS.get(base, OptimConfig()), **typed)
            else:
                sections[section] = cls(**typed)
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{section}: {str(err).splitlines()[0]}") from None
    train = sections["train"]
    if train.nan_policy not in ("stop", "skip"):
        raise ConfigError(f"config key train.nan_policy expects stop or skip, got {train.nan_policy!r}")
    if train.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"config key train.device expects auto, cpu or cuda, got {train.device!r}")
    for key in ("batches", "eval_width", "eval_inputs"):
        if getattr(train, key) < 1:
            raise ConfigError(f"config key train.{key} must be >= 1, got {getattr(train, key)}")
    for key in ("eval_every", "checkpoint_every", "seed", "max_skips"):
        if getattr(train, key) < 0:
            raise ConfigError(f"config key train.{key} must be >= 0, got {getattr(train, key)}")
    return RunConfig(task, sections["model"], sections["optim"], train)
