"""Limits and strict checks for run configurations and the files they come from (docs/reliability.md, "Limits").

Every size, width, depth and count a user can set has a finite upper bound, and the model's estimated size,
one training batch's activations and one evaluation's rollouts have an element budget, so that a typo such
as ``model.D=10000000`` or ``train.eval_width=10**9`` is a one-line :class:`ConfigError` before any work
instead of an allocation failure hours later.  Preset and ``config.json`` files are read with a size limit
(:func:`gram_pyro.files.read_limited`), YAML without anchors or aliases (no alias bombs) and with a nesting
limit, and each value must have its field's JSON type.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any

import yaml

from gram_pyro import files
from gram_pyro.priors import PRIORS


class ConfigError(ValueError):
    """A bad preset, key or value: the message is one line."""


MAX_NESTING = 32  # mappings/lists inside each other in a preset or config file
MODEL_MAX = {"D": 8192, "D_h": 32768, "seq_hidden": 32768, "n_heads": 256, "n_layers": 64, "K": 64, "T": 64,
             "N_sup": 256, "n_prefix": 1024}
OPTIM_MAX = {"batch_size": 65536, "warmup": 10**9}
TRAIN_MAX = {"batches": 10**9, "eval_every": 10**9, "checkpoint_every": 10**9, "eval_width": 65536,
             "eval_inputs": 10**6, "seed": 2**32 - 1, "max_skips": 10**9}
MAX_WIDTH = 65536  # samples per input (gram eval --width, solve --width, generate --num)
MAX_DEPTH = 4096  # supervision steps of a rollout (--depth)
PARAMETER_BUDGET = 2**28  # estimated model parameters (1 GiB of float32)
ACTIVATION_BUDGET = 2**30  # batch_size x latent length x widest layer
ROLLOUT_BUDGET = 2**28  # sampled tokens kept by one evaluation: inputs x width x depth x answer length


def _check_max(section: str, obj: Any, maxima: dict[str, int]) -> None:
    for key, top in maxima.items():
        if getattr(obj, key) > top:
            raise ConfigError(f"config key {section}.{key} must be <= {top}, got {getattr(obj, key)}")


def estimated_parameters(m) -> int:
    """Parameters of GRAMConfig ``m``, estimated from its widths (attention or sequence-MLP blocks in f_L and
    f_H, the four SwiGLU heads of prior and posterior, embeddings and decoder; gram-paper.md §1, §7)."""
    mixer = 4 * m.D * m.D if m.mixer == "attention" else 3 * m.S * m.seq_hidden
    return 2 * m.n_layers * (mixer + 3 * m.D * m.D_h) + 12 * m.D * m.D_h + 3 * m.vocab_size * m.D + m.S * m.D


def rollout_elements(inputs: int, width: int, depth: int, out_len: int) -> int:
    return inputs * width * depth * out_len


def check_rollout(inputs: int, width: int, depth: int, out_len: int, what: str) -> None:
    """Refuse an evaluation or sampling request above MAX_WIDTH, MAX_DEPTH or ROLLOUT_BUDGET."""
    if width > MAX_WIDTH:
        raise ConfigError(f"{what}: width must be <= {MAX_WIDTH}, got {width}")
    if depth > MAX_DEPTH:
        raise ConfigError(f"{what}: depth must be <= {MAX_DEPTH}, got {depth}")
    n = rollout_elements(inputs, width, depth, out_len)
    if n > ROLLOUT_BUDGET:
        raise ConfigError(f"{what}: {inputs} inputs x width {width} x depth {depth} x {out_len} tokens = {n} "
                          f"sampled tokens, more than the budget of {ROLLOUT_BUDGET}")


def check_run_limits(model, optim, train) -> None:
    """The upper bounds of docs/reliability.md ("Limits") for one run's three config sections."""
    _check_max("model", model, MODEL_MAX)
    _check_max("optim", optim, OPTIM_MAX)
    _check_max("train", train, TRAIN_MAX)
    params = estimated_parameters(model)
    if params > PARAMETER_BUDGET:
        raise ConfigError(f"model: about {params} parameters, more than the budget of {PARAMETER_BUDGET} "
                          f"(reduce model.D, model.D_h, model.seq_hidden or model.n_layers)")
    widest = max(model.D, model.D_h, model.seq_hidden)
    activations = optim.batch_size * model.S * widest
    if activations > ACTIVATION_BUDGET:
        raise ConfigError(f"optim.batch_size {optim.batch_size} x {model.S} positions x width {widest} = "
                          f"{activations}, more than the activation budget of {ACTIVATION_BUDGET}")
    check_rollout(train.eval_inputs, train.eval_width, model.N_sup, model.L_out, "train.eval_width/eval_inputs")
    check_prior_args(model)


def check_prior_args(model) -> None:
    """``model.prior_args`` must name keyword arguments of the selected prior's constructor, with numbers."""
    if model.prior not in PRIORS:
        return  # build_prior names the registered priors
    params = list(inspect.signature(PRIORS[model.prior]).parameters.values())[1:]  # after cfg
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    for name, value in model.prior_args:
        if name not in names and not takes_any:
            takes = f"takes {', '.join(names)}" if names else "takes no arguments"
            raise ConfigError(f"config key model.prior_args: prior {model.prior!r} {takes}, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key model.prior_args: {name} must be a number, got {value!r}")


# ------------------------------------------------------------------ files
class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors/aliases (an alias bomb expands exponentially) and with a nesting
    limit (deep nesting would raise RecursionError)."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            raise yaml.YAMLError("anchors and aliases (&, *) are not allowed in gram preset files")
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise yaml.YAMLError(f"nested deeper than {MAX_NESTING} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _nesting(obj: Any, level: int = 0) -> None:
    if level > MAX_NESTING:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels")
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    for child in children:
        _nesting(child, level + 1)


def load_structured(path, kind: str, what: str) -> Any:
    """Parse a YAML or JSON file (``.json``: JSON) of ``kind`` (a ``files.LIMITS`` key) with the size limit,
    the nesting limit and no YAML aliases; ``what`` names the file in the one-line ConfigError."""
    raw = files.read_limited(path, kind)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what}: not a UTF-8 text file (byte {err.start})") from None
    try:
        if str(path).endswith(".json"):
            data = json.loads(text)
            _nesting(data)
            return data
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"cannot parse {what}: nested deeper than {MAX_NESTING} levels") from None
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse {what}: {str(err).splitlines()[0]}") from None


def check_types(section: str, cls, values: dict[str, Any], source: str) -> None:
    """Each value of a saved (``config.json``) section must have its field's JSON type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section {section!r} must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints.get(key)
        if hint is None:
            raise ConfigError(f"{source}: unknown config key {section}.{key if str(key).isidentifier() else repr(key)}")
        if not _json_type_ok(value, hint):
            raise ConfigError(f"{source}: config key {section}.{key} expects {_name(hint)}, got {value!r:.60}")


def _json_type_ok(value: Any, hint) -> bool:
    args = typing.get_args(hint)
    if type(None) in args:
        return value is None or _json_type_ok(value, next(a for a in args if a is not type(None)))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (list, tuple))
    return True


def _name(hint) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args and typing.get_origin(hint) is not tuple else hint
    return "a list" if typing.get_origin(base) is tuple else getattr(base, "__name__", str(base))
