"""Analysis metrics against hand-computed values on small arrays (no model needed)."""

import json
import math

import networkx as nx
import numpy as np
import pytest
from scipy.stats import norm

import gram_tasks as tasks
from gram_analysis import diversity, elbo_report, ppc
from gram_analysis.run import read_history, targets
from gram_analysis.sampling import pca_project

TOY = tasks.get_task("toy-perm-4")


def toy(text):
    return TOY.encode_input(text)


def test_entropy_of_token_distribution_per_position():
    s = np.array([[[1, 2], [1, 2], [2, 2], [2, 2]]])  # position 0: half 1, half 2; position 1: all 2
    np.testing.assert_allclose(diversity.predictive_entropy(s, vocab_size=3), [[math.log(2), 0.0]])
    s = np.array([[[0], [1], [2]]])
    np.testing.assert_allclose(diversity.predictive_entropy(s, vocab_size=3), [[math.log(3)]])


def test_mean_pairwise_hamming():
    s = np.array([[[1, 2, 3], [1, 2, 4], [2, 2, 4]]])  # pairs differ in 1, 2, 1 positions
    np.testing.assert_allclose(diversity.mean_pairwise_hamming(s), [4 / 3])
    assert np.isnan(diversity.mean_pairwise_hamming(s[:, :1])).all()


def test_validity_distinct_valid_and_exact_coverage_on_toy_permutations():
    x = toy("1.3.")  # answers 1234 and 1432
    sols = TOY.solutions(x)
    assert len(sols) == 2
    s = np.array([[[2, 3, 4, 5], [2, 3, 4, 5], [2, 5, 4, 3], [2, 2, 2, 2]]])  # 1234, 1234, 1432, 1111
    valid = diversity.validity(TOY, x[None], s)
    np.testing.assert_array_equal(valid, [[True, True, True, False]])
    np.testing.assert_array_equal(diversity.distinct_valid(TOY, s, valid), [2])
    cov = diversity.coverage_at(TOY, s, valid, [sols], [1, 2, 3, 4])
    np.testing.assert_allclose(cov, [[0.5, 0.5, 1.0, 1.0]])
    assert np.isnan(diversity.coverage_at(TOY, s, valid, None, [1])).all()  # no solution sets: NaN
    m = TOY.metrics(x[None], s)  # agrees with the task's own metrics
    assert m["coverage"] == cov[0, -1] and m["distinct_valid"] == 2
    assert m["coverage_max"] == 1.0 and TOY.metrics(x[None], s[:, :1])["coverage_max"] == 0.5  # 1 of 2 answers


def test_coverage_counts_canonical_colourings_once():
    task = tasks.get_task("graph-coloring-6")
    x = task.encode_input(nx.path_graph(6))
    sols = task.solutions(x)
    a = np.array([3, 4, 3, 4, 3, 4])
    relabelled = np.array([5, 3, 5, 3, 5, 3])  # the same colouring with colours renamed
    other = np.array([3, 4, 5, 3, 4, 5])
    s = np.stack([a, relabelled, other])[None]
    valid = diversity.validity(task, x[None], s)
    assert valid.all()
    np.testing.assert_array_equal(diversity.distinct_valid(task, s, valid), [2])
    np.testing.assert_allclose(diversity.coverage_at(task, s, valid, [sols], [1, 2, 3]),
                               [[1 / len(sols), 1 / len(sols), 2 / len(sols)]])
    m = task.metrics(x[None], s)
    assert m["distinct_valid"] == 2 and m["coverage_max"] == pytest.approx(min(3, len(sols)) / len(sols))


def test_trajectory_spread_is_mean_distance_to_the_mean_state():
    h = np.array([[[0.0, 0.0]], [[2.0, 0.0]]])  # N = 2 draws, 1 step: distances 1 and 1
    np.testing.assert_allclose(diversity.trajectory_spread(h), [1.0])
    h = np.array([[[0.0, 0.0], [1, 1]], [[0.0, 3.0], [1, 1]], [[0.0, 6.0], [1, 1]]])  # step 2: identical draws
    np.testing.assert_allclose(diversity.trajectory_spread(h), [2.0, 0.0])


def test_pca_of_states_on_a_line():
    t = np.linspace(-1, 1, 12).reshape(3, 4)
    h = t[..., None] * np.array([3.0, 4.0, 0.0])  # all on one direction, |direction| = 5
    proj, ratio = pca_project(h, 2)
    np.testing.assert_allclose(ratio, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(proj[..., 0]), np.abs(5 * (t - t.mean())), atol=1e-9)
    assert proj.shape == (3, 4, 2)


def test_pareto_khat_separates_light_and_heavy_tailed_weights():
    z = np.random.default_rng(0).normal(size=4000)
    light = norm.logpdf(z, 0.1, 1.0) - norm.logpdf(z)  # target N(0.1, 1), proposal N(0, 1): k ≈ 0
    heavy = norm.logpdf(z, 0.0, 3.0) - norm.logpdf(z)  # target sd 3: k = 1 − 1/9 ≈ 0.89
    k_light, k_heavy = diversity.pareto_khat(np.stack([light, heavy]))
    assert k_light < 0.3 and k_heavy > 0.6
    assert np.isnan(diversity.pareto_khat(light[:20]))  # too few draws
    assert np.isnan(diversity.pareto_khat(np.full(40, -3.0)))  # constant weights (deterministic model)
    assert diversity.khat_threshold(100) == pytest.approx(0.5) and diversity.khat_threshold(10**4) == 0.7


def test_chain_diagnostics_flag_disagreeing_runs():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(3, 200, 2))
    ess, rhat = diversity.chain_diagnostics(same)
    assert (rhat < 1.05).all() and (ess > 200).all()
    shifted = same.copy()
    shifted[1] += 3.0
    assert (diversity.chain_diagnostics(shifted)[1] > 1.2).all()


def test_ppc_statistics_and_predictive_pvalue():
    np.testing.assert_array_equal(ppc.token_counts(np.array([[1, 2, 2, 0]]), 3), [[1, 1, 2]])
    assert ppc.predictive_pvalue(np.array([[1, 2, 3]]), np.array([2])) == pytest.approx(0.5)
    assert ppc.predictive_pvalue(np.array([[5, 5]]), np.array([1])) == 1.0
    q = tasks.get_task("nqueens-6")
    board = np.ones(36, dtype=np.int64)
    board[[1, 9, 17]] = 2
    assert ppc.task_statistics(q, board[None], board[None, None])["queens placed"][0, 0] == 3


def test_conflict_edges_match_the_task_metric():
    task = tasks.get_task("graph-coloring-6")
    split = task.build(0)["test"]
    x = split.inputs[:5]
    s = np.random.default_rng(1).integers(2, 6, size=(5, 7, 6))  # includes non-colour token 2
    ours = ppc.task_statistics(task, x, s)["conflict edges"]
    assert ours.sum() == task.metrics(x, s)["conflict_edges_total"]
    assert task.conflict_edges(x, split.y[[np.flatnonzero(split.group == g)[0] for g in range(5)]]).sum() == 0


def test_validity_check_and_guide_vs_prior():
    split = TOY.build(0)["test"]
    x, y = split.inputs[:6], targets(split)[:6]
    check = ppc.validity_check(TOY, x, y, y[:, None, :])
    assert check["data_valid_rate"] == 1.0 and check["invalid_data_inputs"] == []
    bad = np.ones_like(y)[:, None, :]
    gp = ppc.guide_vs_prior(TOY, x, y, guide_final=y[:, None, :], prior_final=bad)
    assert gp == {"guide_accuracy": 1.0, "guide_exact_match": 1.0, "prior_accuracy": 0.0,
                  "prior_exact_match": 0.0, "accuracy_gap": 1.0}
    rows = ppc.statistic_table(TOY, x, y, y[:, None, :].repeat(3, axis=1))
    assert all(r["data_mean"] == r["sample_mean"] and r["p_value"] == 0.5 for r in rows)


def test_targets_take_the_first_row_of_each_input():
    split = TOY.build(0)["test"]
    t = targets(split)
    for g in range(len(split.inputs)):
        np.testing.assert_array_equal(t[g], split.y[np.flatnonzero(split.group == g)[0]])


HISTORY = [
    {"loss": 5.0, "batch": 0},  # an older record: no kind, no step
    {"kind": "train", "step": 1, "loss": 4.0, "kl": 0.5},
    {"kind": "eval", "step": 1, "prior_acc": 0.1, "posterior_acc": 0.5, "elbo_full": -9.0, "elbo_surrogate": -5.0,
     "kl_per_transition": [1.0, 2.0, 3.0, 4.0]},
    {"kind": "eval", "step": 2, "prior_acc": 0.3, "elbo_full": -7.0},  # partial: no posterior_acc, no KL
    {"kind": "eval", "step": 3, "posterior_acc": 0.9, "prior_acc": 0.4, "elbo_full": -6.0, "elbo_surrogate": -4.0,
     "kl_per_transition": [0.5, 0.5, 1.0]},  # truncated KL list
]


def test_elbo_report_tolerates_missing_keys_and_kinds():
    c = elbo_report.elbo_curves(HISTORY)
    np.testing.assert_array_equal(c["train_step"], [0, 1])
    np.testing.assert_array_equal(c["train_surrogate_elbo"], [-5.0, -4.0])
    np.testing.assert_array_equal(c["elbo_full"], [-9.0, -7.0, -6.0])
    assert np.isnan(c["elbo_surrogate"][1]) and c["gap"][0] == 4.0
    a3 = elbo_report.a3_check(c)
    assert a3["elbo_full_improved"] and a3["elbo_surrogate_improved"] and a3["final_gap"] == 2.0
    kl = elbo_report.kl_profile(HISTORY, n_sup=2, T=2)
    np.testing.assert_array_equal(kl["per_step"][0], [3.0, 7.0])
    assert kl["latest"][:3].tolist() == [0.5, 0.5, 1.0] and np.isnan(kl["latest"][3])
    gap = elbo_report.accuracy_gap(HISTORY)
    np.testing.assert_allclose(gap["gap"], [0.4, np.nan, 0.5])
    assert np.isnan(gap["prior_coverage"]).all()
    ev, tr = elbo_report.curve_rows(HISTORY)
    assert [r["eval_step"] for r in ev] == [1, 2, 3] and tr[0]["surrogate_elbo"] == -5.0 and np.isnan(tr[0]["kl"])
    final, over = elbo_report.kl_rows(np.array([1.0, 2.0, 3.0, 4.0]), HISTORY, n_sup=2, T=2)
    assert [r["supervision_step"] for r in final] == [1, 1, 2, 2]
    assert [(r["eval_step"], r["kl"]) for r in over[:2]] == [(1, 3.0), (1, 7.0)]
    assert elbo_report.curve_rows([]) == ([], []) and elbo_report.kl_rows(np.zeros(2), [], 1, 2)[1] == []


def test_beta_sensitivity_needs_two_betas():
    rows = [{"task": "t", "beta": 0.5, "acc": 1}, {"task": "t", "beta": 0.1, "acc": 2}, {"task": "u", "beta": 1.0}]
    assert [r["beta"] for r in elbo_report.beta_sensitivity(rows)] == [0.1, 0.5]
    assert elbo_report.beta_sensitivity(rows[:1]) == []


def test_read_history_skips_blank_and_torn_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(HISTORY[1]) + "\n\n" + json.dumps(HISTORY[2]) + "\n" + '{"kind": "tr')
    assert read_history(path) == HISTORY[1:3]
