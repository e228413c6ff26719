"""The Pyro program: sites, handlers, modes, prior rollouts and parameter counts."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive

from gram_pyro import GRAM, MODES, TruncatedBalancedELBO, lprm_best, majority_vote, preset, prior_rollouts
from tests.helpers import batch, perturb_heads, tiny, tiny_config


def eps_sites(trace):
    return [n for n, s in trace.nodes.items() if s["type"] == "sample" and n.startswith("eps_")]


def test_trace_has_one_normal_site_per_transition():
    gram = tiny(T=3, N_sup=2)
    x, y = batch()
    tr = poutine.trace(gram.model).get_trace(x, y)
    names = eps_sites(tr)
    assert names == [f"eps_{n}_{t}" for n in range(2) for t in range(3)]
    for n in names:
        fn = tr.nodes[n]["fn"]
        assert isinstance(fn, dist.Independent) and isinstance(fn.base_dist, dist.Normal)
        assert fn.batch_shape == (3,) and fn.event_shape == (gram.cfg.S, gram.cfg.D)
        assert tr.nodes[n]["cond_indep_stack"][0].name == "instance"
    assert [n for n in tr.nodes if n.startswith("y_") and not n.startswith("y_hat")] == ["y_0", "y_1"]
    assert all(tr.nodes[f"y_{n}"]["is_observed"] for n in range(2))
    assert tr.nodes["y_hat_1"]["value"].shape == (3, gram.cfg.L_out)


def test_predictive_without_guide_samples_prior_rollouts():
    gram = tiny()
    x, _ = batch(B=4)
    pred = Predictive(gram.model, num_samples=5, parallel=True, return_sites=["y_hat_1", "eps_1_2", "value_1"])
    out = pred(x)
    assert out["y_hat_1"].shape == (5, 4, gram.cfg.L_out)
    assert out["eps_1_2"].shape == (5, 4, gram.cfg.S, gram.cfg.D)
    assert out["value_1"].shape == (5, 4)
    assert not torch.allclose(out["eps_1_2"][0], out["eps_1_2"][1])


def test_condition_on_one_step_changes_what_follows_only():
    gram = tiny(sigma_init=0.5)
    perturb_heads(gram)
    x, _ = batch()
    base = poutine.trace(poutine.seed(gram.model, 0)).get_trace(x)
    forced = torch.full_like(base.nodes["eps_0_1"]["value"], 3.0)
    cond = poutine.trace(poutine.seed(poutine.condition(gram.model, {"eps_0_1": forced}), 0)).get_trace(x)
    assert cond.nodes["eps_0_1"]["is_observed"]
    assert torch.equal(cond.nodes["eps_0_0"]["value"], base.nodes["eps_0_0"]["value"])
    after = cond.nodes["eps_0_2"]["fn"].base_dist.scale
    assert not torch.allclose(after, base.nodes["eps_0_2"]["fn"].base_dist.scale)
    do = poutine.trace(poutine.seed(poutine.do(gram.model, {"eps_0_1": forced}), 0)).get_trace(x)
    assert not torch.allclose(do.nodes["eps_0_2"]["fn"].base_dist.scale, base.nodes["eps_0_2"]["fn"].base_dist.scale)


def test_prior_rollouts_never_read_y():
    gram = tiny(sigma_init=0.5)
    x, y = batch()
    y2 = (y + 1).clamp(max=gram.cfg.vocab_size - 1)
    a = poutine.trace(poutine.seed(gram.model, 7)).get_trace(x, y)
    b = poutine.trace(poutine.seed(gram.model, 7)).get_trace(x, y2)
    for n in range(gram.cfg.N_sup):
        assert torch.equal(a.nodes[f"y_hat_{n}"]["value"], b.nodes[f"y_hat_{n}"]["value"])
    for name in eps_sites(a):
        assert torch.equal(a.nodes[name]["value"], b.nodes[name]["value"])


def test_deterministic_mode_is_identical_across_width_and_gram_is_not():
    x, _ = batch(B=2)
    det = prior_rollouts(tiny(mode="deterministic"), x, num_samples=6)
    assert (det.final == det.final[:, :1]).all()
    gram = tiny(sigma_init=0.9)
    with torch.no_grad():  # a trained-looking decoder: logits react to h
        gram.decoder.weight.mul_(20)
    sto = prior_rollouts(gram, x, num_samples=20)
    assert any(len(torch.unique(s, dim=0)) > 1 for s in sto.final)


def test_rollouts_shapes_depth_beyond_training_and_halting():
    gram = tiny(N_sup=2)
    x, _ = batch(B=3)
    r = prior_rollouts(gram, x, num_samples=4, depth=5, chunk_size=5)
    assert r.answers.shape == (3, 4, 5, gram.cfg.L_out) and r.value.shape == (3, 4, 5)
    assert (r.halt_step == 4).all()
    with torch.no_grad():
        gram.halt_head.bias.fill_(5.0)  # halts at once
    h = prior_rollouts(gram, x, num_samples=4, depth=5, halting=True)
    assert (h.halt_step == 0).all()
    assert torch.equal(h.final, h.answers[:, :, 0])
    with pytest.raises(ValueError, match="width"):
        prior_rollouts(gram, x, num_samples=0)


def test_majority_vote_and_lprm_selection():
    final = torch.tensor([[[1, 2], [3, 4], [3, 4], [1, 2], [3, 4]], [[5, 5], [6, 6], [5, 5], [6, 6], [7, 7]]])
    assert majority_vote(final).tolist() == [[3, 4], [5, 5]]
    value = torch.tensor([[0.1, 0.2, 0.3, 0.9, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    assert lprm_best(final, value).tolist() == [[1, 2], [7, 7]]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_runs_one_training_step(mode):
    gram = tiny(mode=mode)
    x, y = batch()
    with gram.shared_recursion():
        terms = TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, n_sup=1)
    terms.loss.backward()
    sites = eps_sites(terms.model_trace)
    assert (len(sites) == 0) == (mode == "deterministic")
    if mode == "stochastic_only":
        assert (terms.model_trace.nodes["eps_0_2"]["fn"].base_dist.loc == 0).all()
        assert (terms.guide_trace.nodes["eps_0_2"]["fn"].base_dist.loc == 0).all()
    if mode == "guide_only":
        assert (terms.guide_trace.nodes["eps_0_2"]["fn"].base_dist.scale == gram.cfg.guide_only_sigma).all()
    assert (gram.f_L is None) == (mode == "flat")


def test_no_deep_supervision_observes_only_the_last_step():
    gram = tiny(deep_supervision=False, N_sup=3)
    x, y = batch()
    tr = poutine.trace(gram.model).get_trace(x, y)
    observed = [n for n, s in tr.nodes.items() if s["type"] == "sample" and s["is_observed"]]
    observed = [n for n in observed if not n.startswith(("y_hat", "halt", "value"))]
    assert observed == ["y_2"]


def test_svi_trains_with_pyro_optimiser():
    gram = tiny()
    x, y = batch(B=8)
    svi = SVI(gram.model, gram.guide, pyro.optim.Adam({"lr": 1e-2}), TruncatedBalancedELBO(max_plate_nesting=1))
    losses = [svi.step(x, y, n_sup=1) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_z0_is_a_fixed_buffer_in_the_checkpoint():
    a, b = GRAM(tiny_config(seed=3)), GRAM(tiny_config(seed=3))
    assert "z0" in a.state_dict() and torch.equal(a.z0, b.z0)
    assert not any(p is a.z0 for p in a.parameters())


@pytest.mark.parametrize("mode,target", [("gram", 10e6), ("deterministic", 7e6)])
def test_paper_preset_parameter_count(mode, target):
    count = GRAM(preset("paper", vocab_size=11, seq_len=81, mode=mode)).parameter_count()
    assert abs(count - target) / target < 0.10, count


def test_attention_and_mlp_mixers_accept_folded_leading_dims():
    for mixer in ("attention", "mlp"):
        gram = tiny(mixer=mixer)
        h = torch.randn(2, 3, gram.cfg.S, gram.cfg.D)
        assert gram.f_H(h).shape == h.shape


def test_truncated_transitions_can_be_drawn_from_the_prior():
    gram = tiny(truncated_from="prior")
    perturb_heads(gram)
    x, y = batch()
    gtr = poutine.trace(gram.guide).get_trace(x, y, n_sup=1)
    mtr = poutine.trace(poutine.replay(gram.model, trace=gtr)).get_trace(x, y, n_sup=1)
    for t in (0, 1):  # masked: the guide's distribution is the model's prior
        g, m = gtr.nodes[f"eps_0_{t}"]["fn"].base_dist, mtr.nodes[f"eps_0_{t}"]["fn"].base_dist
        assert torch.equal(g.loc, m.loc) and torch.equal(g.scale, m.scale)
    g, m = gtr.nodes["eps_0_2"]["fn"].base_dist, mtr.nodes["eps_0_2"]["fn"].base_dist
    assert not torch.equal(g.loc, m.loc)  # the last transition sees y


def test_prior_mean_truncated_transitions_are_noise_free_in_model_and_guide():
    gram = tiny(truncated_from="prior_mean", sigma_init=0.5)
    perturb_heads(gram)
    x, y = batch()
    gtr = poutine.trace(gram.guide).get_trace(x, y, n_sup=1)
    mtr = poutine.trace(poutine.replay(gram.model, trace=gtr)).get_trace(x, y, n_sup=1)
    prior = poutine.trace(gram.model).get_trace(x)  # a prior rollout: the same noise-free first transition
    for tr in (gtr, mtr, prior):
        site = tr.nodes["eps_0_0"]
        assert isinstance(site["fn"], dist.Delta) and torch.equal(site["value"], gtr.nodes["eps_0_0"]["value"])
    assert gtr.nodes["eps_0_0"]["value"].abs().sum() > 0  # the prior mean, not zero
    assert isinstance(gtr.nodes["eps_0_2"]["fn"].base_dist, dist.Normal)  # the last transition keeps its noise
    assert not torch.equal(gtr.nodes["eps_0_2"]["fn"].base_dist.loc, mtr.nodes["eps_0_2"]["fn"].base_dist.loc)


def test_rope_scores_depend_only_on_relative_position():
    from gram_pyro.layers import apply_rope, rope_freqs

    freqs = rope_freqs(8, 4)
    q, k = torch.randn(4), torch.randn(4)
    rq = apply_rope(q.expand(8, 4).contiguous(), freqs)
    rk = apply_rope(k.expand(8, 4).contiguous(), freqs)
    assert torch.allclose(rq[5] @ rk[3], rq[4] @ rk[2], atol=1e-5)
    assert torch.allclose(rq[0] @ rk[0], q @ k, atol=1e-5)
    assert not torch.allclose(rq[5] @ rk[3], rq[5] @ rk[4], atol=1e-3)
