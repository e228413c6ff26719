"""Graph 3-colouring task and DIMACS reader (gram-paper.md §5.5): sizes, enumeration vs SAT and brute
force, encodings, augmentation, metrics, errors."""

import itertools
import json
import time

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysat.solvers import Solver

import gram_tasks as tasks
from gram_tasks.base import TaskInputError
from gram_tasks.dimacs import parse_dimacs, read_dimacs
from gram_tasks.graph_coloring import GraphColoringTask, canonical_colourings, canonicalise

FEW = settings(max_examples=200, deadline=None)


@pytest.fixture(scope="module")
def task():
    return GraphColoringTask(8, 7002, 255)


@pytest.fixture(scope="module")
def data(task):
    return task.build(0)


def edges_of(x, n):
    iu, ju = np.triu_indices(n, 1)
    return [(int(i), int(j)) for i, j, t in zip(iu, ju, x) if t == 2]


def first_occurrence(colours):
    seen = {}
    return tuple(seen.setdefault(c, len(seen)) for c in colours)


def brute_canonical(n, edges):
    """All 3^n labelled colourings checked edge by edge, then canonicalised."""
    return {first_occurrence(c) for c in itertools.product(range(3), repeat=n)
            if all(c[u] != c[v] for u, v in edges)}


def sat_canonical(n, edges):
    """All labelled colourings by SAT with blocking clauses, canonicalised; also their labelled count."""
    var = lambda v, c: 3 * v + c + 1  # noqa: E731
    clauses = [[var(v, c) for c in range(3)] for v in range(n)]
    clauses += [[-var(v, a), -var(v, b)] for v in range(n) for a, b in itertools.combinations(range(3), 2)]
    clauses += [[-var(u, c), -var(v, c)] for u, v in edges for c in range(3)]
    with Solver(name="m22", bootstrap_with=clauses) as s:
        labelled = [tuple((lit - 1) % 3 for lit in m if lit > 0) for m in s.enum_models()]
    return {first_occurrence(c) for c in labelled}, len(labelled)


def adjacency(n):
    return st.lists(st.booleans(), min_size=n * (n - 1) // 2, max_size=n * (n - 1) // 2).map(
        lambda bits: [2 if b else 1 for b in bits])


@FEW
@given(st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), adjacency(n))))
def test_enumeration_matches_brute_force(case):
    n, x = case
    adj = [0] * n
    for u, v in edges_of(x, n):
        adj[u] |= 1 << v
        adj[v] |= 1 << u
    found = canonical_colourings(adj)
    assert len(found) == len(set(found))
    assert set(found) == brute_canonical(n, edges_of(x, n))
    assert canonical_colourings(adj, limit=1) == found[:1]


def test_solutions_match_sat_on_dataset(task, data):
    split = data["test"]
    for i in range(0, len(split.inputs), 9):
        edges = edges_of(split.inputs[i], 8)
        expected, labelled = sat_canonical(8, edges)
        got = {tuple(s) for s in (split.solutions[i] - 3).tolist()}
        assert got == expected
        assert labelled == sum({1: 3, 2: 6, 3: 6}[len(set(c))] for c in got)  # 3!/(3-j)! per class


def test_sizes_and_structure(task, data):
    assert (len(data["train"].inputs), len(data["test"].inputs)) == (7002, 255)
    assert task.seq_len == 28 and task.out_len == 8 and task.vocab_size == 6
    train = {r.tobytes() for r in data["train"].inputs}
    assert len(train) == 7002 and not train & {r.tobytes() for r in data["test"].inputs}
    for split in data.values():
        np.testing.assert_array_equal(split.x, split.inputs[split.group])
        assert sum(len(s) for s in split.solutions) == len(split)
        assert all(len(s) >= 1 for s in split.solutions)
        np.testing.assert_array_equal(split.y, task.canonical(split.y))
        assert all(task.verify(x, y) for x, y in zip(split.x[::7], split.y[::7]))
        for i in range(0, len(split.inputs), 50):
            np.testing.assert_array_equal(split.solutions[i], task.solutions(split.inputs[i]))
    s = task.stats(0)
    assert (s["train_graphs"], s["test_graphs"], s["train_rows"]) == (7002, 255, len(data["train"]))
    assert s["sampled_graphs"] == 7257 + s["duplicate_graphs"] + s["not_colourable"]
    assert json.loads(json.dumps(s)) == s


@FEW
@given(adjacency(6), st.one_of(st.lists(st.integers(3, 5), min_size=6, max_size=6),
                               st.lists(st.integers(0, 6), min_size=6, max_size=6)))
def test_verify_matches_brute_force(x, y):
    task = GraphColoringTask(6, 10, 2)
    expected = all(3 <= c <= 5 for c in y) and all(y[u] != y[v] for u, v in edges_of(x, 6))
    assert task.verify(np.array(x), np.array(y)) == expected
    assert task.verify(np.array(x), np.array(y)) == (first_occurrence(y) in
                                                     {tuple(s) for s in task.solutions(np.array(x)) - 3}
                                                     and all(3 <= c <= 5 for c in y))


def test_verify_agrees_with_solution_set(task, data):
    labelled = np.array(list(itertools.product(range(3, 6), repeat=8)))
    for x, sols in zip(data["test"].inputs[:4], data["test"].solutions[:4]):
        canon = {s.tobytes() for s in sols}
        assert [task.verify(x, y) for y in labelled] == [canonicalise(y).tobytes() in canon for y in labelled]


def test_verify_never_raises(task, data):
    x, y = data["test"].x[0], data["test"].y[0]
    for bad in (None, "abc", np.zeros(3), x[:-1], x.astype(str), [[1], [2, 3]]):
        assert task.verify(bad, y) is False and task.verify(x, bad) is False
        assert len(task.solutions(bad)) == 0


@FEW
@given(st.lists(st.integers(3, 5), min_size=8, max_size=8), st.permutations([3, 4, 5]))
def test_canonical_properties(y, colour_perm):
    y = np.array(y)
    c = canonicalise(y)
    np.testing.assert_array_equal(canonicalise(c), c)
    np.testing.assert_array_equal(canonicalise(np.array(colour_perm)[y - 3]), c)
    assert tuple(c - 3) == first_occurrence(y.tolist())
    np.testing.assert_array_equal(canonicalise(np.stack([y, y]))[1], c)


def test_encode_graphs(task, tmp_path):
    g = nx.cycle_graph(5)
    x = task.encode_input(g)
    assert sorted(edges_of(x, 8)) == sorted(tuple(sorted(e)) for e in g.edges())
    labelled = nx.relabel_nodes(g, {i: "abcde"[(i + 2) % 5] for i in g})
    y = task.encode_input(labelled)
    assert sorted(edges_of(y, 8)) == sorted(tuple(sorted(("abcde".index(u), "abcde".index(v))))
                                            for u, v in labelled.edges())
    path = tmp_path / "c5.col"
    path.write_text("c five-cycle\np edge 5 5\n" + "".join(f"e {u + 1} {v + 1}\n" for u, v in g.edges()))
    np.testing.assert_array_equal(task.encode_input(path), x)
    np.testing.assert_array_equal(task.encode_input(str(path)), x)
    sols = task.solutions(x)
    assert len(sols) == len(brute_canonical(8, edges_of(x, 8)))
    colours = task.decode_output(sols[0])
    np.testing.assert_array_equal(task.encode_output(colours), sols[0])
    np.testing.assert_array_equal(task.encode_output(dict(enumerate(colours))), sols[0])


BAD_GRAPHS = [
    (nx.complete_graph(4), "not 3-colourable"),
    (nx.path_graph(9), "9 vertices, at most 8"),
    (nx.DiGraph([(0, 1)]), "directed"),
    (nx.Graph([(0, 0)]), "self-loop"),
    (nx.Graph([(0, "a")]), "sortable"),
    ([(0, 1)], "expected a networkx.Graph"),
    ("/nonexistent/graph.col", "cannot read DIMACS file"),
]


@pytest.mark.parametrize("obj, fragment", BAD_GRAPHS)
def test_bad_graphs(task, obj, fragment):
    with pytest.raises(TaskInputError) as err:
        task.encode_input(obj)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("obj", [[0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 0], ["a"] * 8, {0: 1}, [0.5] * 8])
def test_bad_outputs(task, obj):
    with pytest.raises(TaskInputError) as err:
        task.encode_output(obj)
    assert "\n" not in str(err.value)


BAD_DIMACS = [
    ("", "empty file"),
    ("c only a comment\n", "missing 'p edge V E'"),
    ("e 1 2\np edge 2 1\n", "line 1: 'e' line before"),
    ("p edge 3 1\np edge 3 1\ne 1 2\n", "line 2: second 'p' line (the first is line 1)"),
    ("p edge 3\n", "line 1: expected 'p edge V E'"),
    ("p graph 3 1\n", "line 1: expected 'p edge V E'"),
    ("p edge x 1\n", "line 1: vertex count 'x' is not an integer"),
    ("p edge 0 0\n", "line 1: bad counts"),
    ("p edge 3 -1\n", "line 1: bad counts"),
    ("p edge 3 2\ne 1 2\n", "line 1: 'p' line declares 2 edges but the file has 1"),
    ("c\np edge 3 1\ne 1 4\n", "line 3: vertex 4 out of range 1..3"),
    ("p edge 3 1\ne 0 1\n", "line 2: vertex 0 out of range"),
    ("p edge 3 1\ne 1 2 3\n", "line 2: expected 'e u v'"),
    ("p edge 3 1\ne 1 b\n", "line 2: vertex 'b' is not an integer"),
    ("p edge 3 1\ne 2 2\n", "line 2: self-loop on vertex 2"),
    ("p edge 3 1\nx 1 2\n", "line 2: malformed line 'x 1 2'"),
    ("p edge 30 0\n", "line 1: graph has 30 vertices, at most 8"),
]


@pytest.mark.parametrize("text, fragment", BAD_DIMACS)
def test_bad_dimacs(text, fragment):
    with pytest.raises(TaskInputError) as err:
        parse_dimacs(text, max_vertices=8)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_dimacs_file_errors(tmp_path):
    path = tmp_path / "bad.col"
    path.write_bytes(b"p edge 2 1\n\xff\xfe\n")
    with pytest.raises(TaskInputError, match="cannot read"):
        read_dimacs(path)
    path.write_text("p edge 2 1\n\n  \ne 1 2\ne 2 1\nbad\n")
    with pytest.raises(TaskInputError, match=r"bad\.col line 6: malformed"):
        read_dimacs(path)


@FEW
@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.tuples(st.integers(1, n), st.integers(1, n)).filter(lambda e: e[0] != e[1]), max_size=20))))
def test_dimacs_round_trip(case):
    n, edges = case
    text = f"c random\np edge {n} {len(edges)}\n" + "".join(f"e {u} {v}\n" for u, v in edges)
    g = parse_dimacs(text)
    assert sorted(g.nodes) == list(range(n))
    assert {frozenset((u - 1, v - 1)) for u, v in edges} == {frozenset(e) for e in g.edges()}


@FEW
@given(st.text(alphabet="cpe edgol0123-9x\n", max_size=60))
def test_dimacs_parser_total(text):
    try:
        g = parse_dimacs(text)
    except TaskInputError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert g.number_of_nodes() >= 1 and nx.number_of_selfloops(g) == 0


def test_augment(task, data):
    split = data["train"]
    rng = np.random.default_rng(0)
    rows = rng.choice(len(split), 300, replace=False)
    xa, ya = task.augment(split.x[rows], split.y[rows], rng)
    assert not np.array_equal(xa, split.x[rows])
    np.testing.assert_array_equal((xa == 2).sum(axis=1), (split.x[rows] == 2).sum(axis=1))
    assert all(task.verify(a, b) for a, b in zip(xa, ya))
    np.testing.assert_array_equal(ya, canonicalise(ya))
    for r, a in zip(rows[:30], xa[:30]):
        g0, g1 = nx.Graph(edges_of(split.x[r], 8)), nx.Graph(edges_of(a, 8))
        g0.add_nodes_from(range(8))
        g1.add_nodes_from(range(8))
        assert nx.is_isomorphic(g0, g1)
        assert len(task.solutions(a)) == len(task.solutions(split.x[r]))
    one_x, one_y = task.augment(split.x[0], split.y[0], rng)
    assert one_x.shape == (28,) and task.verify(one_x, one_y)


def test_metrics(task, data):
    split = data["test"]
    x = split.inputs[:4]
    samples = []
    expected_conflicts = []
    for xi, sols in zip(x, split.solutions[:4]):
        mono = np.full(8, 3)
        samples.append(np.stack([sols[0], sols[0], mono, np.zeros(8, dtype=np.int64)]))
        n_edges = int((xi == 2).sum())
        expected_conflicts.append([0, 0, n_edges, n_edges])
    m = task.metrics(x, np.stack(samples))
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["coverage"] == pytest.approx(np.mean([1 / len(s) for s in split.solutions[:4]]))
    assert m["conflict_edges_total"] == sum(map(sum, expected_conflicts))
    assert m["conflict_edges_per_graph"] == pytest.approx(np.mean([np.mean(c) for c in expected_conflicts]))


def test_deterministic_and_registered(task, data):
    again = task.build(0)
    np.testing.assert_array_equal(again["train"].x, data["train"].x)
    np.testing.assert_array_equal(again["test"].y, data["test"].y)
    small = tasks.get_task("graph-coloring-6")
    a, b, c = small.build(0), GraphColoringTask(6, 1500, 100).build(0), small.build(1)
    np.testing.assert_array_equal(a["train"].inputs, b["train"].inputs)
    assert (len(a["train"].inputs), len(a["test"].inputs), small.seq_len) == (1500, 100, 15)
    assert not np.array_equal(a["train"].inputs, c["train"].inputs)
    assert {"graph-coloring-6", "graph-coloring-8", "graph-coloring-10"} <= set(tasks.list_tasks())


@pytest.mark.slow
def test_sizes_n10():
    start = time.perf_counter()
    task = tasks.get_task("graph-coloring-10")
    data = task.build(0)
    elapsed = time.perf_counter() - start
    assert elapsed < 60
    assert (len(data["train"].inputs), len(data["test"].inputs)) == (13465, 192)
    assert task.seq_len == 45 and task.out_len == 10
    assert not {r.tobytes() for r in data["train"].inputs} & {r.tobytes() for r in data["test"].inputs}
    split = data["test"]
    for i in range(0, len(split.inputs), 8):
        expected, _ = sat_canonical(10, edges_of(split.inputs[i], 10))
        assert {tuple(s) for s in (split.solutions[i] - 3).tolist()} == expected
