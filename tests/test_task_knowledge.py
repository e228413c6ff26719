"""Tasks own their knowledge (issue 15, item 4): analysis/ (and cli/api.py) import no concrete task
module and analysis/ never dispatches on task names, tasks/ imports no matplotlib, and every former duplicate of validity, distinct answers and
coverage (analysis/diversity.py, cli/api.py, cli/__init__.py) agrees with ``Task``."""

import ast
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest

import gram_tasks as tasks
from gram_analysis import diversity, ppc
from gram_cli import api, main

ROOT = Path(__file__).resolve().parents[1]
ANALYSIS = sorted((ROOT / "analysis").glob("*.py"))
WIRING = [ROOT / "cli" / "api.py"]  # fit/evaluate/solve: every task the same way
ALLOWED = {"gram_tasks", "gram_tasks.base"}  # the registry and the interface; never a concrete task module


def _trees(paths=None):
    return [(p.name, ast.parse(p.read_text(), str(p))) for p in (ANALYSIS if paths is None else paths)]


def test_analysis_and_the_api_import_no_concrete_task_module():
    bad = []
    for name, tree in _trees(ANALYSIS + WIRING):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bad += [f"{name}: import {a.name}" for a in node.names
                        if a.name.split(".")[0] == "gram_tasks" and a.name not in ALLOWED]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "gram_tasks":
                if node.module not in ALLOWED:
                    bad.append(f"{name}: from {node.module} import ...")
                elif node.module == "gram_tasks":
                    bad += [f"{name}: from gram_tasks import {a.name}" for a in node.names if a.name not in tasks.__all__]
    assert not bad, bad


def _docstrings(tree) -> set[int]:
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def test_analysis_has_no_task_name_dispatch():
    names = tasks.list_tasks()
    prefixes = {n.rsplit("-", 1)[0] for n in names} | set(names)
    bad = []
    for name, tree in _trees():
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                hit = [p for p in prefixes if node.value.strip("-_: ").lower().startswith(p)]
                bad += [f"{name}:{node.lineno}: string {node.value!r} names task {hit[0]!r}"] if hit else []
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("startswith", "endswith") and "name" in ast.unparse(node.func.value)):
                bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("hasattr", "isinstance") and any(
                    "Task" in ast.unparse(a) and ast.unparse(a) != "Task" for a in node.args[1:]):
                bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, bad


def test_tasks_import_without_matplotlib():
    code = ("import sys, gram_tasks\n[gram_tasks.get_task(n) for n in gram_tasks.list_tasks() if not n.startswith('arc')]\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch', 'gram_pyro',"
            " 'gram_analysis'))))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert json.loads(out.stdout) == []


def _cases():
    """(task, inputs [G, seq_len], samples [G, N, L]): valid answers (some repeated, some symmetric copies)
    mixed with invalid ones."""
    rng = np.random.default_rng(0)
    out = []
    for name in ("toy-perm-4", "nqueens-8", "latin-4", "graph-coloring-6", "sudoku-4"):
        task = tasks.get_task(name)
        split = task.build(0)["test"]
        g = min(4, len(split.inputs))
        x, sols = split.inputs[:g], split.solutions[:g]
        picks = [np.concatenate([s[rng.integers(0, len(s), 5)], rng.integers(1, task.vocab_size, (3, task.out_len))])
                 for s in sols]
        out.append((task, x, np.stack(picks), sols))
    gc = tasks.get_task("graph-coloring-6")
    x = gc.encode_input(nx.path_graph(6))
    s = np.array([[3, 4, 3, 4, 3, 4], [5, 3, 5, 3, 5, 3], [3, 4, 5, 3, 4, 5], [3, 3, 3, 3, 3, 3]])
    out.append((gc, x[None], s[None], [gc.solutions(x)]))  # two samples are one colouring up to renaming
    return out


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0].name)
def test_former_duplicates_agree_with_the_task(case, monkeypatch, capsys):
    task, x, s, sols = case
    valid = np.array([[task.verify(xi, y) for y in row] for xi, row in zip(x, s)])  # brute force
    distinct = [len({tuple(task.canonical(y).tolist()) for y, ok in zip(row, v) if ok}) for row, v in zip(s, valid)]
    np.testing.assert_array_equal(task.validity(x, s), valid)
    np.testing.assert_array_equal(diversity.validity(task, x, s), valid)
    np.testing.assert_array_equal(task.distinct_valid(s, valid), distinct)
    np.testing.assert_array_equal(diversity.distinct_valid(task, s, valid), distinct)
    cov = task.coverage_at(s, valid, sols, [1, 4, s.shape[1]])
    np.testing.assert_array_equal(diversity.coverage_at(task, s, valid, sols, [1, 4, s.shape[1]]), cov)
    np.testing.assert_allclose(cov[:, -1], np.array(distinct) / [len(v) for v in sols])
    m = task.metrics(x, s)
    assert m["accuracy"] == pytest.approx(valid.mean()) and m["distinct_valid"] == pytest.approx(np.mean(distinct))
    assert m["coverage"] == pytest.approx(cov[:, -1].mean())
    assert set(ppc.task_statistics(task, x, s)) == set(task.answer_statistics(x, s))

    # gram solve (api.solve) and gram generate (cli) count the task's way, on fixed draws
    monkeypatch.setattr(api, "sample", lambda run, xs, *a: s[:1])
    run = SimpleNamespace(task=task, splits={"test": SimpleNamespace(inputs=x)})
    monkeypatch.setattr(task, "encode_input", lambda obj: x[0])
    solved = api.solve(run, "input", width=s.shape[1])
    found, invalid = task.answer_counts(x[0], s[0])
    assert solved["invalid"] == invalid == int((~valid[0]).sum())
    assert [c["count"] for c in solved["solutions"]] == [c for _, c in found] and len(found) == distinct[0]
    monkeypatch.setattr(api, "load_run", lambda *a, **k: run)
    assert main(["generate", "RUN", "--num", str(s.shape[1]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["valid"] == int(valid[0].sum()) and summary["distinct_valid"] == distinct[0]


@pytest.mark.parametrize("name", ["toy-perm-4", "nqueens-6", "graph-coloring-6", "vertex-coloring-6", "sudoku-4",
                                  "sudoku-gen-4", "latin-4"])
def test_every_task_draws_its_answers(name):
    from matplotlib.figure import Figure

    task = tasks.get_task(name)
    split = task.build(0)["test"]
    ax = Figure().subplots()
    task.draw(ax, split.y[0], split.x[0])
    assert ax.texts or ax.images or ax.collections


def test_arc_draws_coloured_grids_in_the_original_frame(tmp_path):
    from matplotlib.figure import Figure

    from gram_tasks.arc import ARC_PALETTE

    puzzle = {"train": [{"input": [[1, 0], [2, 0]], "output": [[0, 1], [0, 2]]}],
              "test": [{"input": [[4, 0, 0], [0, 5, 0]], "output": [[0, 0, 4], [0, 5, 0]]}]}
    (tmp_path / "flip.json").write_text(json.dumps(puzzle))
    task = tasks.get_task(f"arc:data={tmp_path / 'flip.json'},grid=4,aug=3")
    test = task.build(0)["test"]
    assert task.draws_input
    for x, y in zip(test.x, test.y):  # every augmentation of the test input draws as the original grids
        ax = Figure().subplots()
        task.draw_input(ax, x)
        task.draw(ax, y, x)
        inp, out = (im.get_array() for im in ax.images)
        np.testing.assert_allclose(inp, ARC_PALETTE[np.array(puzzle["test"][0]["input"])])
        np.testing.assert_allclose(out, ARC_PALETTE[np.array(puzzle["test"][0]["output"])])
    ax = Figure().subplots()
    task.draw(ax, np.zeros(task.out_len, dtype=np.int64), test.x[0])  # no grid: the raw 4x4 canvas
    assert ax.images[0].get_array().shape == (4, 4, 3)
