"""N-Queens task (gram-paper.md §5.4): exact counts, SAT cross-checks, encodings, augmentation, errors."""

import itertools
import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysat.solvers import Solver

import gram_tasks as tasks
from gram_tasks.base import TaskInputError
from gram_tasks.nqueens import NQueensTask, all_solutions, dihedral_permutations

N = 8
FEW = settings(max_examples=200, deadline=None)


@pytest.fixture(scope="module")
def task():
    return NQueensTask(N)


@pytest.fixture(scope="module")
def data(task):
    return task.build(0)


def sat_completions(n, queens):
    """All full boards (as sets of (row, col)) keeping ``queens``: SAT with blocking clauses."""
    var = lambda r, c: r * n + c + 1  # noqa: E731
    cells = list(itertools.product(range(n), repeat=2))
    clauses = [[var(r, c) for c in range(n)] for r in range(n)]
    for (r1, c1), (r2, c2) in itertools.combinations(cells, 2):
        if r1 == r2 or c1 == c2 or abs(r1 - r2) == abs(c1 - c2):
            clauses.append([-var(r1, c1), -var(r2, c2)])
    clauses += [[var(r, c)] for r, c in queens]
    with Solver(name="m22", bootstrap_with=clauses) as s:
        return {frozenset(divmod(v - 1, n) for v in m if v > 0) for m in s.enum_models()}


def queens_of(tokens, n=N):
    return frozenset(divmod(int(i), n) for i in np.nonzero(np.asarray(tokens) == 2)[0])


def brute_verify(x, y, n=N):
    """Direct restatement of the rules, cell by cell."""
    if len(x) != n * n or len(y) != n * n or any(t not in (1, 2) for t in list(x) + list(y)):
        return False
    qs = queens_of(y, n)
    if len(qs) != n:
        return False
    for (r1, c1), (r2, c2) in itertools.combinations(qs, 2):
        if r1 == r2 or c1 == c2 or abs(r1 - r2) == abs(c1 - c2):
            return False
    return queens_of(x, n) <= qs


def test_full_solution_counts_match_sat():
    assert [len(all_solutions(n)) for n in (4, 5, 6, 8, 10)] == [2, 10, 4, 92, 724]
    sols = {frozenset(enumerate(s.tolist())) for s in all_solutions(N)}
    assert sols == sat_completions(N, [])


def test_exact_counts_n8(task, data):
    s = task.stats(0)
    assert (s["unique_inputs"], s["pairs"]) == (5148, 8464)
    assert (s["train_inputs"], s["test_inputs"]) == (4375, 773)
    assert s["max_completions"] == 18
    assert round(s["mean_completions"], 2) == 1.64 and round(s["single_solution_fraction"], 3) == 0.655
    assert (len(data["train"].inputs), len(data["test"].inputs)) == (4375, 773)
    assert (len(data["train"]), len(data["test"])) == (s["train_pairs"], s["test_pairs"])
    assert s["train_pairs"] + s["test_pairs"] == 8464
    assert json.loads(json.dumps(s)) == s


def test_split_structure(task, data):
    train_keys = {r.tobytes() for r in data["train"].inputs}
    assert not train_keys & {r.tobytes() for r in data["test"].inputs}
    for split in data.values():
        assert split.x.dtype == split.y.dtype == split.group.dtype == np.int64
        assert split.x.shape[1] == split.y.shape[1] == task.seq_len == 64
        np.testing.assert_array_equal(split.x, split.inputs[split.group])
        assert sum(len(s) for s in split.solutions) == len(split)
        assert len({r.tobytes() for r in split.inputs}) == len(split.inputs)
        n_queens = (split.inputs == 2).sum(axis=1)
        assert set(n_queens.tolist()) == {N - k for k in task.removed}
        for i in range(0, len(split.inputs), 37):
            np.testing.assert_array_equal(split.solutions[i], task.solutions(split.inputs[i]))
        for xi, yi, gi in zip(split.x[::11], split.y[::11], split.group[::11]):
            assert task.verify(xi, yi)
            assert any((yi == s).all() for s in split.solutions[gi])


def test_completions_match_sat(data):
    rng = np.random.default_rng(1)
    split = data["test"]
    for i in rng.choice(len(split.inputs), 40, replace=False):
        expected = sat_completions(N, queens_of(split.inputs[i]))
        assert {queens_of(s) for s in split.solutions[i]} == expected


def test_verify_agrees_with_solution_set(task, data):
    everything = task.solutions(np.ones(N * N, dtype=np.int64))
    assert len(everything) == 92
    for x in data["train"].inputs[::97]:
        found = {s.tobytes() for s in task.solutions(x)}
        assert [task.verify(x, s) for s in everything] == [s.tobytes() in found for s in everything]


def board_pairs(n=N):
    """(x, y) token lists: y from a permutation (often near-valid) or random cells; x a subset of y or random."""
    perm_board = st.permutations(range(n)).map(lambda p: [2 if c == p[r] else 1 for r in range(n) for c in range(n)])
    rand_board = st.lists(st.sampled_from([1, 1, 1, 2, 0, 3]), min_size=n * n, max_size=n * n)
    solution = st.sampled_from(all_solutions(n).tolist()).map(
        lambda p: [2 if c == p[r] else 1 for r in range(n) for c in range(n)])
    y = st.one_of(perm_board, rand_board, solution)

    def with_x(y):
        keep = st.lists(st.booleans(), min_size=n * n, max_size=n * n)
        subset = keep.map(lambda k: [2 if t == 2 and kk else 1 for t, kk in zip(y, k)])
        return st.tuples(st.one_of(subset, rand_board), st.just(y))

    return y.flatmap(with_x)


@FEW
@given(board_pairs())
def test_verify_matches_brute_force(pair):
    x, y = pair
    assert NQueensTask(N).verify(np.array(x), np.array(y)) == brute_verify(x, y)


def test_verify_never_raises(task):
    good = task.solutions(np.ones(64, dtype=np.int64))[0]
    for bad in (None, "abc", np.zeros(3), good[:-1], good.astype(str), [[1, 2], [3]], good.reshape(8, 8)):
        assert task.verify(bad, good) is False
        assert task.verify(np.ones(64, dtype=np.int64), bad) is False
        assert len(task.solutions(bad)) == 0


@FEW
@given(st.text(alphabet=".Qq x\n", max_size=90))
def test_parser_total(text):
    """Any text is either a valid partial board or a one-line TaskInputError."""
    task = NQueensTask(N)
    try:
        x = task.encode_input(text)
    except TaskInputError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert x.shape == (64,) and set(np.unique(x)) <= {1, 2}
    qs = queens_of(x)
    assert all(r1 != r2 and c1 != c2 and abs(r1 - r2) != abs(c1 - c2)
               for (r1, c1), (r2, c2) in itertools.combinations(qs, 2))
    assert all(brute_verify(x, s) for s in task.solutions(x))
    np.testing.assert_array_equal(task.encode_input(task.decode_output(x)), x)


@FEW
@given(st.lists(st.integers(-1, 3), min_size=0, max_size=70))
def test_array_parser_total(values):
    task = NQueensTask(N)
    try:
        x = task.encode_input(np.array(values))
    except TaskInputError as err:
        assert "\n" not in str(err)
        return
    assert len(values) == 64 and set(values) <= {0, 1}
    np.testing.assert_array_equal(x, np.array(values) + 1)


@FEW
@given(st.sampled_from(all_solutions(N).tolist()), st.lists(st.booleans(), min_size=N, max_size=N))
def test_round_trips(cols, keep):
    task = NQueensTask(N)
    full = np.array([[c == cols[r] for c in range(N)] for r in range(N)], dtype=int)
    part = full * np.array(keep, dtype=int)[:, None]
    y = task.encode_output(full)
    assert task.decode_output(y).count("Q") == N
    np.testing.assert_array_equal(task.encode_output(task.decode_output(y)), y)
    x = task.encode_input(part)
    np.testing.assert_array_equal(x, task.encode_input(task.decode_output(x)))
    np.testing.assert_array_equal(x, task.encode_input(task.decode_output(x).replace("\n", "")))
    np.testing.assert_array_equal(x, task.encode_input(part.ravel()))
    assert task.verify(x, y)


BAD = [
    ("........\n" * 7, "7 rows"),
    ("........\n" * 7 + ".......\n", "row 8 has 7 characters"),
    ("........\n" * 3 + "...x....\n" + "........\n" * 4, "row 4, column 4: unexpected character 'x'"),
    ("Q.......\n" + ".Q......\n" + "........\n" * 6, "row 1 column 1 and row 2 column 2 attack"),
    ("Q......Q\n" + "........\n" * 7, "attack"),
    ("Q.......\n" * 2 + "........\n" * 6, "attack"),
    (np.ones((8, 8), dtype=int), "64 queens, at most 8"),
    (np.zeros((8, 7), dtype=int), "shape (8, 7)"),
    (np.full(64, 2), "value 2, expected 0 or 1"),
    (np.array(["a"] * 64), "dtype"),
    (42, "shape ()"),
]


@pytest.mark.parametrize("obj, fragment", BAD)
def test_bad_inputs(task, obj, fragment):
    with pytest.raises(TaskInputError) as err:
        task.encode_input(obj)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_encode_output_checks_format_only(task):
    y = task.encode_output("Q" * 64)
    assert (y == 2).all() and not task.verify(np.ones(64, dtype=np.int64), y)
    with pytest.raises(TaskInputError):
        task.encode_output("Q" * 63)
    assert "?" in task.decode_output(np.zeros(64, dtype=np.int64))


def test_dihedral_group():
    perms = dihedral_permutations(N)
    assert len({p.tobytes() for p in perms}) == 8
    closed = {p[q].tobytes() for p in perms for q in perms}
    assert closed == {p.tobytes() for p in perms}


def test_augment_preserves_validity_and_solution_sets(task, data):
    split = data["train"]
    rng = np.random.default_rng(0)
    rows = rng.choice(len(split), 300, replace=False)
    xa, ya = task.augment(split.x[rows], split.y[rows], rng)
    assert xa.shape == (300, 64) and not np.array_equal(xa, split.x[rows])
    assert all(task.verify(a, b) for a, b in zip(xa, ya))
    for p in dihedral_permutations(N):
        for x in split.inputs[:20]:
            image = {s[p].tobytes() for s in task.solutions(x)}
            assert image == {s.tobytes() for s in task.solutions(x[p])}
    one_x, one_y = task.augment(split.x[0], split.y[0], rng)
    assert one_x.shape == (64,) and task.verify(one_x, one_y)


def test_build_is_deterministic(task, data):
    again = task.build(0)
    for name in ("train", "test"):
        for field in ("x", "y", "group", "inputs"):
            np.testing.assert_array_equal(getattr(again[name], field), getattr(data[name], field))
    other = task.build(1)
    assert len(other["test"].inputs) == 773
    assert not np.array_equal(other["test"].inputs, data["test"].inputs)


def test_metrics_accuracy_and_coverage(task, data):
    split = data["test"]
    idx = [i for i in range(len(split.inputs)) if len(split.solutions[i]) >= 2][:5]
    x = split.inputs[idx]
    bad = np.ones(64, dtype=np.int64)
    samples = np.stack([np.stack([split.solutions[i][0], split.solutions[i][0], bad, split.solutions[i][-1]])
                        for i in idx])
    m = task.metrics(x, samples)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["distinct_valid"] == pytest.approx(2.0)
    assert m["coverage"] == pytest.approx(np.mean([2 / len(split.solutions[i]) for i in idx]))


def test_small_and_registered_tasks():
    assert {"nqueens-6", "nqueens-8", "nqueens-10"} <= set(tasks.list_tasks())
    t6 = tasks.get_task("nqueens-6")
    s = t6.stats(0)
    assert (t6.removed, s["full_solutions"], s["unique_inputs"], s["max_completions"]) == ((3, 4), 4, 140, 1)
    assert s["train_inputs"] + s["test_inputs"] == 140 and s["test_inputs"] == 21


@pytest.mark.slow
def test_exact_counts_n10():
    start = time.perf_counter()
    task = NQueensTask(10)
    data = task.build(0)
    elapsed = time.perf_counter() - start
    s = task.stats(0)
    assert (s["unique_inputs"], s["pairs"]) == (43420, 126700)
    assert (s["train_inputs"], s["test_inputs"]) == (36907, 6513)
    assert s["max_completions"] == 93
    assert round(s["mean_completions"], 2) == 2.92 and round(s["single_solution_fraction"], 3) == 0.368
    assert len(data["train"]) + len(data["test"]) == 126700
    assert elapsed < 30
    rng = np.random.default_rng(0)
    for i in rng.choice(len(data["test"].inputs), 10, replace=False):
        expected = sat_completions(10, queens_of(data["test"].inputs[i], 10))
        assert {queens_of(s, 10) for s in data["test"].solutions[i]} == expected
