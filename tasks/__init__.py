"""Tasks: datasets, encodings, verifiers and exact solution sets (gram-paper.md §5).

``get_task(name)`` returns a :class:`tasks.base.Task`; ``list_tasks()`` lists the registered names.
"""

from __future__ import annotations

from typing import Callable

from tasks.base import Split, Task, TaskInputError

_REGISTRY: dict[str, Callable[[], Task]] = {}


def register(name: str, factory: Callable[[], Task]) -> None:
    """Register a task factory under ``name`` (a later registration replaces an earlier one)."""
    _REGISTRY[name] = factory


def list_tasks() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    _load_builtin()
    if name not in _REGISTRY:
        raise TaskInputError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def _load_builtin() -> None:
    """Import the built-in task modules; each registers its tasks at import."""
    import tasks.toy  # noqa: F401

    for module in ("tasks.nqueens", "tasks.graph_coloring", "tasks.sudoku", "tasks.generation"):
        try:
            __import__(module)
        except ModuleNotFoundError as err:  # a task module not written yet
            if err.name != module:
                raise


__all__ = ["Split", "Task", "TaskInputError", "get_task", "list_tasks", "register"]
