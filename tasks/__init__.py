"""Tasks: datasets, encodings, verifiers and exact solution sets (gram-paper.md §5).

``get_task(name)`` returns a :class:`tasks.base.Task`; ``list_tasks()`` lists the registered names.
A name may carry options for the task's factory after a colon, ``arc-1:aug=8,puzzles=10`` (tasks/arc.py);
the whole string is what a run records, so a run reloads the same task.
"""

from __future__ import annotations

from typing import Callable

from gram_tasks.base import Split, Task, TaskInputError

_REGISTRY: dict[str, Callable[[], Task]] = {}


def register(name: str, factory: Callable[[], Task]) -> None:
    """Register a task factory under ``name`` (a later registration replaces an earlier one)."""
    _REGISTRY[name] = factory


def list_tasks() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    """The task registered as ``name``; ``NAME:key=value,...`` passes string options to its factory."""
    _load_builtin()
    base, _, opts = name.partition(":")
    if base not in _REGISTRY:
        raise TaskInputError(f"unknown task {base!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    if not opts:
        return _REGISTRY[base]()
    pairs = [kv.partition("=") for kv in opts.split(",")]
    if any(not k.strip() or not sep for k, sep, _ in pairs):
        raise TaskInputError(f"task options must look like {base}:key=value,key=value, got {name!r}")
    try:
        return _REGISTRY[base](**{k.strip(): v.strip() for k, _, v in pairs})
    except TypeError:
        raise TaskInputError(f"task {base} takes no options") from None


def _load_builtin() -> None:
    """Import the built-in task modules; each registers its tasks at import."""
    import gram_tasks.toy  # noqa: F401

    for module in ("gram_tasks.nqueens", "gram_tasks.graph_coloring", "gram_tasks.sudoku", "gram_tasks.generation", "gram_tasks.arc",
                   "gram_tasks.latin"):
        try:
            __import__(module)
        except ModuleNotFoundError as err:  # a task module not written yet
            if err.name != module:
                raise


__all__ = ["Split", "Task", "TaskInputError", "get_task", "list_tasks", "register"]
