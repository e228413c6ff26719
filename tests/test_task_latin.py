"""``latin-4``, the task written by following docs/adding_a_task.md: enumeration, verifier, solution sets,
encodings, augmentation, the analysis hooks, and the CLI (data, train, eval, report) with no other file touched."""

import itertools
import json

import numpy as np
import pytest

import gram_tasks as tasks
from gram_cli import main
from gram_tasks.latin import LatinSquareTask, latin_squares

TASK = tasks.get_task("latin-4")


def test_registered_and_enumerates_the_576_squares():
    assert "latin-4" in tasks.list_tasks() and isinstance(TASK, LatinSquareTask)
    squares = latin_squares(4)
    assert squares.shape == (576, 16) and len(np.unique(squares, axis=0)) == 576
    brute = [p for p in itertools.product(itertools.permutations(range(1, 5)), repeat=4)
             if all(len(set(col)) == 4 for col in zip(*p))]
    assert len(brute) == 576


def test_verify_and_solutions_agree_with_a_brute_force_filter():
    split = TASK.build(0)["test"]
    for x, sols in list(zip(split.inputs, split.solutions))[:40]:
        given = x > 1
        expected = [s for s in latin_squares(4) + 1 if (s[given] == x[given]).all()]
        np.testing.assert_array_equal(sols, np.array(expected))
        assert all(TASK.verify(x, s) for s in sols)
    x, s = split.inputs[0], split.solutions[0][0].copy()
    s[[0, 1]] = s[[1, 0]]  # two cells of one row swapped: some column repeats a symbol
    assert not TASK.verify(x, s) and not TASK.verify(x, np.zeros(16, dtype=np.int64)) and not TASK.verify("x", s)
    assert len(split.x) == len(split.y) == sum(len(v) for v in split.solutions)


def test_splits_are_disjoint_and_multi_solution():
    splits = TASK.build(0)
    train = {r.tobytes() for r in splits["train"].inputs}
    assert not train & {r.tobytes() for r in splits["test"].inputs}
    stats = TASK.stats(0)
    assert stats["test_inputs"] == len(splits["test"].inputs) and stats["mean_completions"] > 2
    assert stats["train_pairs"] == len(splits["train"])


def test_encodings_round_trip_and_bad_input_is_one_line():
    x = TASK.encode_input("12..\n....\n....\n...1")
    assert x.tolist()[:4] == [2, 3, 1, 1] and len(TASK.solutions(x)) > 1
    answer = "1234\n3412\n2143\n4321"
    y = TASK.encode_output(answer)
    assert TASK.decode_output(y) == answer and TASK.verify(TASK.encode_input("1...\n....\n....\n...1"), y)
    for bad, msg in (("11..\n....\n....\n....", "row 1 holds a symbol twice"), ("12", "expected 4 rows"),
                     ("12x.\n....\n....\n....", "unexpected character")):
        with pytest.raises(tasks.TaskInputError, match=msg):
            TASK.encode_input(bad)
    with pytest.raises(tasks.TaskInputError, match="every cell"):
        TASK.encode_output("1234\n3412\n2143\n432.")


def test_augmentation_maps_completion_sets_onto_completion_sets():
    split = TASK.build(0)["test"]
    rng = np.random.default_rng(0)
    for x, sols in list(zip(split.inputs, split.solutions))[:20]:
        xs = np.repeat(x[None], len(sols), axis=0)
        state = rng.bit_generator.state
        xa, ya = TASK.augment(xs, sols, rng)
        rng.bit_generator.state = state
        xb, _ = TASK.augment(xs[:1], sols[:1], rng)  # the first row's transform applied alone
        assert all(TASK.verify(a, b) for a, b in zip(xa, ya))
        assert len(TASK.solutions(xb[0])) == len(sols)


def test_analysis_hooks_count_repeats_and_draw():
    split = TASK.build(0)["test"]
    x, y = split.inputs[:2], np.stack([split.solutions[0][0], np.full(16, 2)])
    stats = TASK.answer_statistics(x, y)
    assert stats["repeated symbols"].tolist() == [0, 2 * 4 * 3] and stats["count of token 2"].tolist() == [4, 16]
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    TASK.draw(ax, y[0], x[0])
    assert len(ax.texts) == 16 and sum(t.get_fontweight() == "bold" for t in ax.texts) == int((x[0] > 1).sum())


def test_cli_data_train_eval_and_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    assert main(["data", "latin-4", "--stats"]) == 0
    assert json.loads(capsys.readouterr().out)["squares"] == 576
    run = str(tmp_path / "run")
    sets = ["train.batches=4", "train.eval_every=2", "train.checkpoint_every=2", "train.eval_inputs=16"]
    assert main(["train", "--task", "latin-4", "--out", run, "--preset", "cpu-tiny", "--quiet",
                 *(f"--set={s}" for s in sets)]) == 0
    capsys.readouterr()
    assert main(["eval", run, "--width", "1,3", "--max-inputs", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["width"] for r in rows] == [1, 3] and all(0 <= r["coverage"] <= r["coverage_max"] <= 1 for r in rows)
    out = tmp_path / "report.html"
    assert main(["report", run, "--out", str(out), "--width", "1,2", "--max-inputs", "4"]) == 0
    page = out.read_text()
    assert "latin-4" in page and "repeated symbols" in (tmp_path / "report_figures" / "ppc_statistics.csv").read_text()
    assert (tmp_path / "report_figures" / "gallery_run.png").stat().st_size > 0
