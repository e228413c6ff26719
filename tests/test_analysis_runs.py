"""Analysis of tiny trained runs: sampling, the DataTree and its netCDF round trip, and the HTML report.

GRAM and the deterministic baseline are trained once per session on ``toy-perm-4`` for a few batches
with the real trainer, so their histories are real JSONL logs.  A "second seed" and an "other β" run
reuse GRAM's weights under a config that differs only in that field: enough to exercise runs as
chains and the β sensitivity without training more models.
"""

import csv
import json
import re

import numpy as np
import pytest
import torch
import xarray as xr
from pyro import poutine

import gram_tasks as tasks
from gram_analysis import build_report, build_datatree, draw_samples, load_datatree, save_datatree
from gram_analysis.run import RunData, read_history
from gram_analysis.sampling import _log_weight
from gram_pyro import GRAM, preset, prior_rollouts
from gram_pyro.config import OptimConfig
from gram_pyro.trainer import Trainer
from gram_pyro.config import TrainConfig

TASK = tasks.get_task("toy-perm-4")
MAX_INPUTS = 8


def _train(tmp, name, mode="gram", seed=0) -> RunData:
    splits = TASK.build(0)
    train, test = splits["train"], splits["test"]
    torch.manual_seed(seed)
    cfg = preset("cpu-tiny", vocab_size=TASK.vocab_size, seq_len=TASK.seq_len, out_len=TASK.out_len, mode=mode,
                 beta=0.1, seed=seed)
    gram = GRAM(cfg)

    def evaluate(g):
        m = TASK.metrics(test.inputs[:8], prior_rollouts(g, torch.as_tensor(test.inputs[:8]), 4).final.numpy())
        return {"prior_acc": m["accuracy"], "prior_coverage": m["coverage"]}

    log = tmp / f"{name}.jsonl"
    oc = OptimConfig(batch_size=32, ema_decay=0.0)  # the raw weights (OptimConfig's default is the cpu preset's EMA)
    trainer = Trainer(gram, torch.as_tensor(train.x), torch.as_tensor(train.y), oc,
                      TrainConfig(seed=seed, eval_every=2), evaluate=evaluate, log_path=log)
    trainer.run(5)
    trainer.finalize()
    return RunData(name=name, task=TASK, gram=gram, split=test, history=read_history(log), seed=seed)


def _variant(run: RunData, name: str, seed: int = 0, **changes) -> RunData:
    gram = GRAM(run.gram.cfg.replace(seed=seed, **changes))
    gram.load_state_dict(run.gram.state_dict())
    return RunData(name=name, task=TASK, gram=gram.eval(), split=run.split, history=run.history, seed=seed)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis_runs")
    gram = _train(tmp, "gram")
    return {
        "gram": gram,
        "gram_seed1": _variant(gram, "gram", seed=1),
        "gram_beta1": _variant(gram, "gram-beta1", beta=1.0),
        "det": _train(tmp, "det", mode="deterministic"),
    }


@pytest.fixture(scope="session")
def samples(runs):
    return {k: draw_samples(runs[k], 20, max_inputs=MAX_INPUTS, traj_inputs=2) for k in ("gram", "det")}


def test_histories_are_real_trainer_logs(runs):
    kinds = {r.get("kind") for r in runs["gram"].history}
    assert kinds == {"train", "eval"}


def test_sample_shapes_and_deterministic_baseline(samples, runs):
    s, d = samples["gram"], samples["det"]
    n_sup, L = s.n_sup, TASK.out_len
    assert s.prior_answers.shape == (MAX_INPUTS, 32, 2 * n_sup, L)  # draws raised to 32 for k̂
    assert s.guide_answers.shape == (MAX_INPUTS, 32, n_sup, L) and s.log_weight.shape == (MAX_INPUTS, 32)
    assert s.traj_pcs.shape == (2, 32, 2 * n_sup, 3) and s.traj_spread.shape == (2, 2 * n_sup)
    assert (s.traj_spread > 0).all()  # GRAM trajectories of one input differ ...
    assert np.allclose(d.traj_spread, 0, atol=1e-4)  # ... the deterministic baseline's do not
    assert (d.prior_answers == d.prior_answers[:, :1]).all()
    assert np.ptp(d.log_weight, axis=1).max() < 1e-4 and np.isfinite(s.log_weight).all()
    assert np.ptp(s.log_weight, axis=1).min() > 0
    again = draw_samples(runs["gram"], 20, max_inputs=MAX_INPUTS, traj_inputs=2)  # seeded by RunData.seed
    np.testing.assert_array_equal(again.prior_answers, s.prior_answers)
    np.testing.assert_array_equal(again.log_weight, s.log_weight)


def test_log_weight_is_unscaled_unmasked_log_p_minus_log_q(runs):
    gram = runs["gram"].gram
    x, y = torch.as_tensor(TASK.build(0)["test"].inputs[:3]), torch.as_tensor(TASK.build(0)["test"].y[:3])
    with torch.no_grad():
        gt = poutine.trace(gram.guide).get_trace(x, y, beta=0.3)  # β-scaled and masked sites
        mt = poutine.trace(poutine.replay(gram.model, trace=gt)).get_trace(x, y, beta=0.3)
        expected = torch.zeros(3)
        for name, site in mt.nodes.items():
            if site["type"] == "sample":
                expected += site["fn"].log_prob(site["value"])
                if not site["is_observed"]:
                    expected -= gt.nodes[name]["fn"].log_prob(gt.nodes[name]["value"])
        n_latent = sum(1 for n in gt.nodes if n.startswith("eps_"))
        assert n_latent == gram.cfg.N_sup * gram.cfg.T  # masked transitions count too
        torch.testing.assert_close(_log_weight(mt, gt, 3), expected)


def test_datatree_groups_dims_and_netcdf_round_trip(samples, runs, tmp_path):
    dt = build_datatree([samples["gram"]], [runs["gram"].history])
    groups = {"predictions", "posterior_predictive", "sample_stats", "observed_data", "constant_data", "training",
              "diversity", "trajectory"}
    assert groups <= set(dt.children)
    assert dict(dt["predictions"]["y"].sizes) == {"chain": 1, "draw": 32, "instance": MAX_INPUTS, "position": 4}
    assert dt["training"]["eval_kl_per_transition"].dims == ("chain", "eval_step_index", "transition")
    np.testing.assert_array_equal(dt["predictions"]["y"].values[0], np.swapaxes(samples["gram"].final, 0, 1))
    path = save_datatree(dt, tmp_path / "sub" / "run.nc")
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.nc"]  # no temporary file left behind
    back = load_datatree(path)
    assert set(back.groups) == set(dt.groups)
    for group in dt.children:
        xr.testing.assert_identical(back[group].to_dataset(), dt[group].to_dataset())
    assert back.attrs["task"] == "toy-perm-4" and json.loads(back.attrs["runs"]) == ["gram"]


def test_datatree_with_runs_as_chains_has_ess_and_rhat(runs):
    s = [draw_samples(runs[k], 5, max_inputs=4, traj_inputs=1) for k in ("gram", "gram_seed1")]
    dt = build_datatree(s, [runs["gram"].history, []])  # the second run logged nothing
    assert dt["predictions"].sizes["chain"] == 2
    assert dt["diversity"]["rhat_log_weight"].dims == ("instance",)
    assert np.isnan(dt["training"]["loss"].values[1]).all()
    with pytest.raises(ValueError):
        build_datatree(s, [[]])


def test_diversity_group_matches_the_task_metrics(samples, runs):
    dt = build_datatree([samples["gram"]], [runs["gram"].history], widths=(1, 5, 20))
    s = samples["gram"]
    m = TASK.metrics(s.inputs, s.final[:, :20])
    assert dt["diversity"]["coverage"].sel(width=20).mean().item() == pytest.approx(m["coverage"])
    assert dt["sample_stats"]["valid"].mean().item() == pytest.approx(TASK.metrics(s.inputs, s.final)["accuracy"])


def test_report_renders_every_figure_and_table(runs, tmp_path):
    out = build_report([runs["gram"], runs["det"]], tmp_path / "rep.html", widths=(1, 5, 20), max_inputs=MAX_INPUTS)
    page = (tmp_path / "rep.html").read_text()
    expected = {"coverage_vs_width", "accuracy_vs_depth", "diversity", "trajectory_pca", "elbo_curves", "kl_per_step",
                "accuracy_gap", "log_weights_gram", "ppc_validity", "ppc_statistics", "gallery_gram", "gallery_det"}
    assert set(out["figures"]) == expected
    for name, path in out["figures"].items():
        assert path.endswith(f"rep_figures/{name}.png")
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert re.search(f'<img id="fig-{re.escape(name)}"[^>]*src="data:image/png;base64,', page)
    assert {"summary", "coverage_vs_width", "accuracy_vs_depth", "kl_per_transition", "elbo_curves",
            "ppc_statistics", "pareto_khat_gram", "trajectory_pca"} <= set(out["tables"])
    for name, path in out["tables"].items():
        assert f'id="table-{name}"' in page
        assert path is None or open(path).readline().startswith("run,")
    for path in out["datatrees"].values():
        assert set(load_datatree(path).children) >= {"predictions", "training"}
    assert page.count("<figcaption>") == len(expected)  # every figure has its one-sentence caption


def test_report_with_seeds_betas_and_a_run_without_logs(runs, tmp_path):
    bare = RunData(name="no-log", task=TASK, gram=runs["gram_beta1"].gram, split=runs["gram_beta1"].split,
                   history=[], seed=0)
    out = build_report([runs["gram"], runs["gram_seed1"], bare], tmp_path / "multi.html", widths=(1, 4),
                       max_inputs=4)
    assert "beta_sensitivity" in out["figures"] and out["tables"]["chain_diagnostics"]
    page = (tmp_path / "multi.html").read_text()
    assert "×2 seeds" in page and 'id="fig-beta_sensitivity"' in page
    a3 = {r["run"]: r for r in csv.DictReader(open(out["tables"]["app_a3_check"]))}
    assert a3["no-log (gram, β=1)"]["elbo_full_last"] == "nan"  # no log: NaN, not a failure
    assert a3["gram (gram, β=0.1) ×2 seeds"]["elbo_full_last"] != "nan"
