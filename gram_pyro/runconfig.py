"""Run configuration: model, optimiser and training settings, YAML/JSON presets and ``--set`` overrides.

A run preset is a YAML or JSON file with up to three sections, each the keys of one config dataclass::

    model: {D: 64, K: 2, T: 2, N_sup: 4, beta: 1.0}   # GRAMConfig keys
    optim: {lr: 0.002, ema_decay: 0.98}               # OptimConfig keys
    train: {batches: 300, eval_every: 50}             # TrainConfig keys

The files in ``gram_pyro/configs/`` (``gram tasks`` lists them) are the one preset namespace: ``--preset cpu``
on the command line, :func:`run_preset` and :func:`preset` in Python read the same file, and a section's
``preset: NAME`` key starts that section from preset NAME's section (``optim: {preset: paper}``).  A path to a
user file works wherever a name does.  ``model.beta`` is a number or a table ``{task or task family: β}``;
the paper's table (gram-paper.md §2.4) lives in ``configs/paper.yaml`` and ``beta: paper`` selects it.
Overrides are ``section.key=value`` strings, converted to the field's type; an unknown key or a value of the
wrong type raises ``ConfigError`` with a one-line message.  Task sizes (vocabulary, lengths) come from the task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gram_pyro.config import GRAMConfig, OptimConfig, TrainConfig
from gram_pyro.validation import ConfigError, check_run_limits, check_types, load_structured

CONFIG_DIR = Path(__file__).parent / "configs"




@dataclass(frozen=True)
class RunConfig:
    """One run: the task's name and the three validated sections."""

    task: str
    model: GRAMConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"task must be a non-empty name, got {self.task!r}")
        for name, cls in (("model", GRAMConfig), ("optim", OptimConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        check_run_limits(self.model, self.optim, self.train)  # upper bounds (docs/reliability.md, "Limits")

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model": _plain(self.model), "optim": _plain(self.optim), "train": _plain(self.train)}

    def identity_hash(self) -> str:
        """Hash of what a checkpoint's weights depend on (task and model); training length may change.

        Only model fields that differ from their defaults enter it, so a field added later with a default (a new
        option, off) leaves the hash of every earlier run as it was: such a run, loaded from its config.json,
        gets the default and still matches its checkpoint.  A changed default is safe too: config.json stores
        every field, so the old value enters the hash and the run is refused, not run with the new meaning.
        """
        defaults = _plain(GRAMConfig(**{k: getattr(self.model, k) for k in _SIZES}))
        model = {k: v for k, v in _plain(self.model).items() if v != defaults[k] or k in _SIZES}
        blob = json.dumps({"task": self.task, "model": model}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "run configuration") -> "RunConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping, got {type(d).__name__}")
        for name, cls in _SECTIONS.items():
            if name in d:
                check_types(name, cls, d[name], source)
        try:
            model = GRAMConfig(**_tuples(GRAMConfig, d["model"]))
            return RunConfig(d["task"], model, OptimConfig(**_tuples(OptimConfig, d["optim"])),
                             TrainConfig(**d["train"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"malformed run configuration: {err}") from None


def _plain(obj) -> dict[str, Any]:
    return {k: list(map(list, v)) if k in ("prior_args", "pair_tokens") else (list(v) if isinstance(v, tuple) else v)
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
    if not path.exists():
        raise ConfigError(f"preset file not found: {path}")
    data = load_structured(path, "preset", f"preset {path}") or {}
    if not isinstance(data, dict) or set(data) - {"model", "optim", "train"}:
        raise ConfigError(f"preset {path}: top-level keys must be among model, optim, train")
    for k, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"preset {path}: section {k!r} must be a mapping of keys to values")
        bad = [key for key in section or {} if not isinstance(key, str)]
        if bad:
            raise ConfigError(f"preset {path}: section {k!r} has a key that is not a name: {bad[0]!r}")
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
            if isinstance(value, float) or isinstance(value, bool) or not _INT.fullmatch(text):
                raise ValueError
            return int(text)
        if hint is float:
            if isinstance(value, bool) or not _FLOAT.fullmatch(text):
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
            if key.rsplit(".", 1)[-1] == "pair_tokens":  # "p:a:b,p:a:b" or a list of [p, a, b]
                return tuple(_int_triple(i) for i in items)
            return tuple(float(i) for i in items)
    except (ValueError, TypeError):
        pass
    kind = {"prior_args": "name=value pairs", "pair_tokens": "p:a:b integer triples"}.get(
        key.rsplit(".", 1)[-1], getattr(hint, "__name__", str(hint)))
    raise ConfigError(f"config key {key} expects {kind}, got {value!r}")


# The strict grammar of numbers in presets and --set (ASCII only: no "1_000", no full-width digits).
_INT = re.compile(r"-?[0-9]{1,30}")
_FLOAT = re.compile(r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf|infinity|nan)", re.I)


def _int_triple(item: Any) -> tuple[int, int, int]:
    """One ``model.pair_tokens`` entry, ``"p:a:b"`` or ``[p, a, b]``, as three ints (ValueError otherwise)."""
    parts = item if isinstance(item, (list, tuple)) else str(item).split(":")
    if len(parts) != 3 or any(isinstance(v, (bool, float)) or not _INT.fullmatch(str(v).strip()) for v in parts):
        raise ValueError
    return tuple(int(str(v).strip()) for v in parts)


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


def _resolve(section: str, values: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    """A section with its ``preset: NAME`` key replaced by preset NAME's (resolved) section, then its own keys."""
    values = dict(values)
    base = values.pop("preset", None)
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise ConfigError(f"config key {section}.preset expects a preset name, got {base!r}")
    if base in seen:
        raise ConfigError(f"{section}.preset {base!r} refers back to itself (via {' -> '.join(seen)})")
    inherited = _resolve(section, load_preset(base)[section], (*seen, base))
    return {**inherited, **values}


def _beta_for(task: str | None, beta: Any) -> Any:
    """β for ``task`` from a number or a table {task or task family: β} (``paper``: configs/paper.yaml's table).

    The family of ``nqueens-8`` is ``nqueens`` (a trailing size removed).  Without a task a table gives no
    value (the GRAMConfig default stays): the model's architecture does not depend on it.
    """
    from_paper = str(beta).lower() == "paper"
    table = _resolve("model", load_preset("paper")["model"], ("paper",)).get("beta") if from_paper else beta
    if not isinstance(table, dict):
        return beta
    if task is None:
        return None
    task = task.partition(":")[0]  # task options (``arc-1:aug=8``, tasks/__init__.py) leave β as it is
    family = task.rsplit("-", 1)[0] if task.rsplit("-", 1)[-1].isdigit() else task
    for key in (task, family):
        if key in table:
            return table[key]
    source = "the paper" if from_paper else "the preset's beta table"
    raise ConfigError(f"{source} gives no beta for task {task!r}; set model.beta to a number")


PUZZLE_PREFIX = 16
"""Prefix tokens given to a task with puzzle identifiers (ARC) when its preset has none (gram-paper.md §1.4: the
paper's 16 zero-initialised registers; the learned puzzle embedding is added to the first)."""


def _build(data: dict[str, dict[str, Any]], task: str | None, sizes: dict[str, Any], seen: tuple[str, ...],
           model_keys: dict[str, Any] | None = None) -> tuple[GRAMConfig, OptimConfig, TrainConfig]:
    """Resolved preset sections (+ Python ``model_keys``, already typed) -> the three validated configs."""
    out, model_keys = [], model_keys or {}
    for section, cls in _SECTIONS.items():
        values = _resolve(section, data[section], seen)
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in fields or (section == "model" and key in _SIZES):
                raise ConfigError(f"unknown config key {section}.{key if key.isidentifier() else repr(key)}")
        if section == "model" and "beta" in values:  # a Python beta= replaces a table before any lookup
            beta = None if "beta" in model_keys else _beta_for(task, values["beta"])
            if beta is None:
                del values["beta"]
            else:
                values["beta"] = beta
        typed = {k: _coerce(f"{section}.{k}", v, hints[k]) for k, v in values.items()}
        if section == "model":
            unknown = sorted(set(model_keys) - fields)
            if unknown:
                raise ConfigError(f"unknown config key(s): {', '.join('model.' + k for k in unknown)}")
            typed.update(model_keys, **sizes)
            if typed.get("num_puzzles") and not typed.get("n_prefix"):
                typed["n_prefix"] = PUZZLE_PREFIX  # the puzzle embedding needs prefix tokens to live in
        try:
            out.append(cls(**typed))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{section}: {str(err).splitlines()[0]}") from None
    return out[0], out[1], out[2]


def build_run_config(task: str, sizes: dict[str, int], preset_name: str = "cpu", overrides: list[str] = (),
                     mode: str | None = None) -> RunConfig:
    """Preset file + overrides + task sizes -> a validated RunConfig."""
    data = load_preset(preset_name)
    for section, values in parse_overrides(list(overrides)).items():
        data[section].update(values)
    if mode is not None:
        data["model"]["mode"] = mode
    return RunConfig(task, *_build(data, task, sizes, (str(preset_name),)))


def run_preset(name: str = "cpu", task: str | None = None,
               **model_keys: Any) -> tuple[GRAMConfig, OptimConfig, TrainConfig]:
    """The model, optimiser and training settings of run preset ``name`` — what ``--preset NAME`` trains.

    ``model_keys`` are GRAMConfig fields (task sizes ``vocab_size``, ``seq_len``, ``out_len`` and any override);
    ``task`` picks β from a preset's β table (the paper presets, §2.4).
    """
    sizes = {k: model_keys.pop(k) for k in _SIZES if k in model_keys}
    return _build(load_preset(name), task, sizes, (name,), model_keys)


def preset(name: str = "cpu", task: str | None = None, **model_keys: Any) -> GRAMConfig:
    """The model config of run preset ``name`` (``run_preset(name, task, **model_keys)[0]``)."""
    return run_preset(name, task, **model_keys)[0]
