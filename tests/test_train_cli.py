"""Trainer pieces (EMA, deep supervision) and the command line."""

import json

import pytest
import torch

from gram_cli import main
from gram_pyro.runconfig import run_preset
from gram_pyro.update import EMA
from gram_pyro.config import OptimConfig
from gram_pyro import trainer as trainer_module
from gram_pyro.trainer import Trainer, fit
from gram_pyro.config import TrainConfig
from tests.helpers import tiny


def toy_data(B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(2, 5, (B, 5), generator=g)
    return x, x[:, :4] + 1


def test_ema_tracks_the_average_and_leaves_it_in_the_model():
    gram = tiny(N_sup=1, T=1, K=1)
    before = {k: v.clone() for k, v in gram.state_dict().items()}
    ema = EMA(gram, 0.5)
    with torch.no_grad():
        gram.decoder.weight.add_(1.0)
    ema.update(gram)
    assert torch.allclose(ema.shadow["decoder.weight"], before["decoder.weight"] + 0.5)
    x, y = toy_data()
    fit(gram, x, y, num_batches=2, oc=OptimConfig(batch_size=8, ema_decay=0.99))
    assert torch.equal(gram.z0, before["z0"])  # the fixed initial state is never averaged away
    assert not torch.equal(gram.decoder.weight, before["decoder.weight"])


def test_paper_optimiser_preset_matches_the_paper():
    oc = run_preset("paper")[1]
    assert (oc.lr, oc.weight_decay, oc.clip, oc.batch_size, oc.ema_decay) == (1e-4, 1.0, 1.0, 768, 0.9999)


@pytest.mark.parametrize("deep_supervision,updates", [(True, 3), (False, 1)])
def test_one_update_per_supervision_step_and_one_without_deep_supervision(monkeypatch, deep_supervision, updates):
    x, y = toy_data()
    calls = []
    orig = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (calls.append(1), orig(self, *a, **k))[1])
    fit(tiny(N_sup=3, deep_supervision=deep_supervision), x, y, num_batches=1, oc=OptimConfig(batch_size=16))
    assert len(calls) == updates


def test_cpu_budget_counts_training_updates_not_evaluations(monkeypatch):
    """max_cpu_seconds charges only the updates: a costly evaluation after every batch does not end training."""
    clock = {"t": 0.0}
    monkeypatch.setattr(trainer_module.time, "process_time", lambda: clock["t"])
    orig = Trainer._update

    def update(self, *args):  # every update costs one CPU second on the fake clock
        clock["t"] += 1.0
        return orig(self, *args)

    def evaluate(gram):  # every evaluation costs 1000
        clock["t"] += 1000.0
        return {}

    monkeypatch.setattr(Trainer, "_update", update)
    x, y = toy_data()
    tr = Trainer(tiny(N_sup=3), x, y, OptimConfig(batch_size=8), TrainConfig(eval_every=1), evaluate=evaluate)
    tr.run(100, max_cpu_seconds=10.0)
    assert tr.batch == 4  # 3 s per batch: past 10 s after the fourth batch
    assert len(tr.batch_records) == 4


def test_cli_tasks_and_data_stats(capsys):
    assert main(["tasks"]) == 0
    assert "toy-perm-4" in capsys.readouterr().out
    assert main(["data", "toy-perm-4", "--stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["train_inputs"] + stats["test_inputs"] == 184


def test_cli_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["data", "no-such-task"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gram: error: unknown task 'no-such-task'") and err.count("\n") == 1


def test_cli_demo_runs_end_to_end(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    assert main(["demo", "--toy", "--set", "train.batches=3", "--out", str(tmp_path / "demo"), "--quiet",
                 "--report-inputs", "8"]) == 0
    out = capsys.readouterr().out
    assert "-ELBO surrogate" in out and "deterministic" in out and "coverage" in out
    assert (tmp_path / "demo" / "gram" / "checkpoint.pt").exists()
    assert (tmp_path / "demo" / "deterministic" / "checkpoint.pt").exists()
    html = (tmp_path / "demo" / "report.html").read_text()  # the demo's own report of both runs
    assert "coverage" in html.lower() and html.count("<img") >= 8


def test_cli_demo_keeps_files_gram_did_not_write(capsys, tmp_path):
    """The run-folder rule (docs/reliability.md): a demo folder holding someone's own config.json is refused,
    and nothing in it or beside it is removed."""
    own = tmp_path / "demo" / "deterministic"
    own.mkdir(parents=True)
    (own / "config.json").write_text("mine")
    (own / "history.jsonl").write_text("mine too")
    assert main(["demo", "--toy", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gram: error: ") and "that gram did not write" in err and err.count("\n") == 1
    assert (own / "config.json").read_text() == "mine" and (own / "history.jsonl").read_text() == "mine too"
    assert not (tmp_path / "demo" / "gram").exists() and not (tmp_path / "demo" / "report.html").exists()


def test_cli_demo_refuses_bad_budgets_before_any_work(capsys, tmp_path):
    assert main(["demo", "--minutes", "0", "--out", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err == "gram: error: --minutes must be > 0, got 0\n"
    assert not (tmp_path / "demo").exists()


def test_paper_preset_takes_the_task_beta():
    from gram_pyro import preset

    assert preset("paper", task="nqueens-8").beta == 0.07
    assert preset("paper-sudoku", task="sudoku-9").beta == 0.1
    assert preset("paper", task="sudoku-gen-9").beta == 0.05
    assert preset("paper", task="graph-coloring-10", beta=0.2).beta == 0.2
    with pytest.raises(ValueError, match="unknown config key"):
        preset("cpu", bogus=1)
