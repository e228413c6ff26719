"""The seed's systems as baselines (issue 17, docs/baselines.md): interface, recursion, ACT, CLI and API."""

import json

import pytest
import torch
from pyro import poutine

from gram_pyro.baselines import MODELS, SYSTEMS, build_model
from gram_cli import api, main
from gram_pyro.config import GRAMConfig
from gram_pyro.inference import prior_rollouts
from gram_pyro.update import StepLoss
from gram_pyro.config import OptimConfig
from gram_pyro.trainer import Trainer
from tests.helpers import batch, tiny_config

ONE_STEP = {"looped": dict(deep_supervision=False), "direct": dict(N_sup=1), "ar": dict(N_sup=1)}


def system(name: str, **kw):
    return build_model(tiny_config(family=name, **{**ONE_STEP.get(name, {}), **kw}))


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_a_baseline_has_gram_sites_and_no_latent_site(name):
    m = system(name)
    x, y = batch(4, m.cfg)
    tr = poutine.trace(m.model).get_trace(x, y)
    sample_sites = [k for k, v in tr.nodes.items() if v["type"] == "sample" and k != "instance"]
    assert f"y_{m.cfg.N_sup - 1}" in sample_sites
    assert [k for k in sample_sites if not tr.nodes[k]["is_observed"]] == []  # y observed, the rest deterministic
    guide = poutine.trace(m.guide).get_trace(x, y)
    assert [k for k, v in guide.nodes.items() if v["type"] == "sample"] == []
    n = m.cfg.N_sup - 1
    assert tr.nodes[f"y_hat_{n}"]["value"].shape == (4, m.cfg.L_out)
    assert tr.nodes[f"q_{n}"]["value"].shape == (4, 2) and tr.nodes[f"halt_{n}"]["value"].shape == (4,)
    assert tr.nodes["_RETURN"]["value"].h.shape[0] == 4 and m.stochastic is False


def _grad_flags(module, m, x):
    flags = []
    hook = module.register_forward_hook(lambda *_: flags.append(torch.is_grad_enabled()))
    carry = m.initial_carry(x.shape[:-1])
    m.step(carry, m.encode(x))
    hook.remove()
    return flags


def test_trm_recursion_counts_and_only_the_last_recursion_has_gradient():
    m = system("trm", K=3, T=3)
    x, _ = batch(2, m.cfg)
    assert _grad_flags(m.net, m, x) == [False] * 8 + [True] * 4  # (T−1)(n+1) without, n+1 with gradient


def test_hrm_one_step_gradient_and_timescales():
    m = system("hrm", K=2, T=3)
    x, _ = batch(2, m.cfg)
    assert _grad_flags(m.f_L, m, x) == [False] * 5 + [True]  # N·T_L low-level calls, the last with gradient
    assert _grad_flags(m.f_H, m, x) == [False] * 2 + [True]  # N high-level calls
    assert len(m.f_L) == len(m.f_H) == 2 * m.cfg.n_layers


def test_urm_truncates_backprop_through_the_first_loops_and_convolves_after_the_gate():
    m = system("urm", K=2, T=3)
    x, _ = batch(2, m.cfg)
    assert _grad_flags(m.layers, m, x) == [False] * 4 + [True] * 2
    conv = m.layers[0].mlp
    h = torch.randn(1, 5, m.cfg.D)
    h2 = h.clone()
    h2[:, 3] += 1.0  # a change at position 3 reaches positions 3 and 4 only (kernel 2, causal taps)
    changed = (conv(h) - conv(h2)).abs().sum(-1)[0] > 0
    assert changed.tolist() == [False, False, False, True, True]


def test_direct_pred_is_one_forward_pass_of_four_times_the_layers():
    m = system("direct")
    assert len(m.net) == 4 * m.cfg.n_layers and m.cfg.N_sup == 1
    x, _ = batch(2, m.cfg)
    assert _grad_flags(m.net, m, x) == [True]


def test_looped_tf_backpropagates_through_the_whole_trajectory():
    m = system("looped", N_sup=3)
    x, y = batch(4, m.cfg)
    tr = poutine.trace(m.model).get_trace(x, y)
    assert [k for k in tr.nodes if k.startswith("y_") and not k.startswith("y_hat")] == ["y_2"]  # one update
    loss = -tr.log_prob_sum()
    loss.backward()
    assert m.embed.weight.grad.abs().sum() > 0
    h0 = m.initial_carry(x.shape[:-1]).h.clone().requires_grad_(True)
    out = m.model(x, None, carry=m.initial_carry(x.shape[:-1])._replace(h=h0), n_sup=1)
    assert out.h.requires_grad is False  # the returned carry is detached, like GRAM's


def test_deterministic_systems_give_identical_answers_and_ar_gives_different_samples():
    x, _ = batch(3, tiny_config())
    for name in ("trm", "hrm", "urm", "looped", "direct"):
        m = system(name).eval()
        final = prior_rollouts(m, x, num_samples=4).final
        assert (final == final[:, :1]).all(), name
    ar = system("ar").eval()
    final = prior_rollouts(ar, x, num_samples=8).final
    assert len({tuple(a.tolist()) for a in final[0]}) > 1
    assert final.shape == (3, 8, ar.cfg.L_out)


def test_ar_teacher_forcing_is_the_likelihood_of_its_ancestral_samples():
    m = system("ar").eval()
    x, _ = batch(3, m.cfg)
    tr = poutine.trace(m.model).get_trace(x)
    drawn = tr.nodes["y_0"]["value"]
    assert torch.equal(tr.nodes["y_hat_0"]["value"], drawn)
    replayed = poutine.trace(poutine.condition(m.model, data={"y_0": drawn})).get_trace(x)
    tr.compute_log_prob()
    replayed.compute_log_prob()
    assert torch.allclose(tr.nodes["y_0"]["log_prob"], replayed.nodes["y_0"]["log_prob"], atol=1e-5)


def test_act_halted_rows_leave_the_loss_in_training_only():
    m = system("trm", N_sup=3)
    with torch.no_grad():
        m.halt_head.bias.fill_(5.0)  # q_halt > 0: every row halts after its first step, unless exploring
    x, y = batch(16, m.cfg)
    m.train()
    tr = poutine.trace(m.model).get_trace(x, y)
    assert bool(torch.as_tensor(tr.nodes["y_0"]["mask"]).all())
    later = tr.nodes["y_1"]["mask"]
    assert later.dtype == torch.bool and (~later).sum() > 0
    assert tr.nodes["_RETURN"]["value"].halted.all()
    m.eval()
    assert bool(torch.as_tensor(poutine.trace(m.model).get_trace(x, y).nodes["y_1"]["mask"]).all())


def test_hrm_q_learning_loss_reaches_the_core_and_trm_loss_is_halt_only():
    for name in ("hrm", "trm"):
        m = system(name)
        x, y = batch(4, m.cfg)
        loss, stats, carry, _ = StepLoss(m, m.cfg.alpha)(x, y, None, 0)
        assert torch.isfinite(loss) and stats["kl"] == 0.0
        loss.backward()
        core = m.f_H if name == "hrm" else m.net
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in core.parameters())
        assert m.halt_head.weight.grad.abs().sum() > 0


def test_hrm_halts_when_q_halt_exceeds_q_continue():
    m = system("hrm")
    q = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    assert (m.halt_score(q) > 0).tolist() == [False, True]


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    x, y = batch(16, tiny_config())
    runs = []
    for split in (False, True):
        torch.manual_seed(0)
        m = system("hrm")
        t = Trainer(m, x, y, OptimConfig(batch_size=8), checkpoint_path=tmp_path / f"{split}.pt", identity="h")
        t.run(1 if split else 3)
        if split:
            t.save()
            torch.manual_seed(123)  # the resumed run restores the RNG from the checkpoint
            m = system("hrm")
            t = Trainer(m, x, y, OptimConfig(batch_size=8), checkpoint_path=tmp_path / "True.pt", identity="h")
            t.resume()
            t.run(3)
        runs.append({k: v.clone() for k, v in m.state_dict().items()})
    for k in runs[0]:
        assert torch.allclose(runs[0][k], runs[1][k], atol=1e-6), k


def test_config_validates_the_family():
    with pytest.raises(ValueError, match="unknown family"):
        tiny_config(family="lstm")
    with pytest.raises(ValueError, match="deep_supervision=false"):
        tiny_config(family="looped")
    with pytest.raises(ValueError, match="N_sup=1"):
        tiny_config(family="ar", N_sup=2)
    with pytest.raises(ValueError, match="GRAM ablation"):
        tiny_config(family="trm", mode="flat")
    assert not tiny_config(family="trm").stochastic and tiny_config().stochastic
    with pytest.raises(ValueError, match="GRAM only"):
        build_model(tiny_config(family="trm"), prior=object())


def test_gram_tasks_lists_the_models(capsys):
    assert main(["tasks"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("models:"))
    assert all(name in line for name in ["gram", "deterministic", *SYSTEMS]) and list(MODELS)[:2] == ["gram",
                                                                                                     "deterministic"]
    with pytest.raises(SystemExit) as exc:
        main(["train", "--task", "toy-perm-4", "--out", "x", "--model", "lstm"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


TRAIN = ["--task", "toy-perm-4", "--preset", "cpu-tiny", "--quiet", "--set", "train.eval_every=0",
         "--set", "train.eval_inputs=8", "--set", "train.eval_width=2", "--set", "train.checkpoint_every=1"]


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_every_system_trains_resumes_evaluates_solves_and_reports_through_the_cli(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = str(tmp_path / name)
    assert main(["train", "--out", run, "--model", name, *TRAIN, "--set", "train.batches=2"]) == 0
    assert main(["train", "--out", run, "--model", name, *TRAIN, "--set", "train.batches=3", "--resume"]) == 0
    loaded = api.load_run(run)
    assert loaded.config.model.family == name and type(loaded.gram) is SYSTEMS[name]
    assert max(r["batch"] for r in loaded.history if r.get("kind") == "train") == 2
    capsys.readouterr()
    assert main(["eval", run, "--width", "1,2", "--max-inputs", "4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["width"] for r in rows] == [1, 2] and all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert main(["solve", run, "1...", "--width", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["width"] == 3 and out["invalid"] + sum(s["count"] for s in out["solutions"]) == 3
    assert main(["report", run, "--out", str(tmp_path / "r.html"), "--max-inputs", "4", "--width", "1,2"]) == 0
    assert "coverage" in (tmp_path / "r.html").read_text().lower()


def test_baselines_train_in_memory_with_the_plain_trainer():
    cfg = GRAMConfig(vocab_size=6, seq_len=4, D=16, n_heads=2, D_h=16, family="urm", K=1, T=2, N_sup=2)
    m = build_model(cfg)
    x, y = batch(8, cfg)
    t = Trainer(m, x, y, OptimConfig(batch_size=8))
    t.run(2)
    assert t.step == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in t.batch_records)
