"""The truncated, balanced ELBO (Eq. 14) and the full-trajectory ELBO (Eq. 13)."""

import contextlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence

from gram_pyro import TruncatedBalancedELBO, full_trajectory_elbo
from gram_pyro.elbo import balanced_kl, grad_scaled
from tests.helpers import batch, perturb_heads, tiny


def traces(gram, x, y, **kw):
    gtr = poutine.trace(gram.guide).get_trace(x, y, **kw)
    mtr = poutine.trace(poutine.replay(gram.model, trace=gtr)).get_trace(x, y, **kw)
    mtr, gtr = prune_subsample_sites(mtr), prune_subsample_sites(gtr)
    mtr.compute_log_prob()
    return mtr, gtr


def grads(loss, params):
    return [g if g is not None else torch.zeros_like(p) for p, g in
            zip(params, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))]


@pytest.mark.parametrize("prior", ["gaussian", "student_t"])
def test_kl_balancing_value_and_gradient_split(prior):
    """Value = plain KL; prior gets alpha, posterior (1 - alpha) of the unbalanced gradient."""
    alpha = 0.8
    gram = tiny(prior=prior, sigma_init=0.3)
    perturb_heads(gram)  # heads start identical (KL = 0 at its minimum): move them apart
    x, y = batch()
    mtr, gtr = traces(gram, x, y, n_sup=1)
    q, p, z = gtr.nodes["eps_0_2"]["fn"], mtr.nodes["eps_0_2"]["fn"], gtr.nodes["eps_0_2"]["value"]
    plain = (q.log_prob(z) - p.log_prob(z)) if prior == "student_t" else kl_divergence(q, p)
    bal = balanced_kl(q, p, z, alpha)
    assert torch.allclose(bal, plain, atol=1e-5)
    prior_params = list(gram.prior.parameters())
    post_params = list(gram.posterior.head.parameters())
    g_plain_p, g_bal_p = grads(plain.sum(), prior_params), grads(bal.sum(), prior_params)
    g_plain_q, g_bal_q = grads(plain.sum(), post_params), grads(bal.sum(), post_params)
    assert any(g.abs().sum() > 0 for g in g_plain_p) and any(g.abs().sum() > 0 for g in g_plain_q)
    for a, b in zip(g_bal_p, g_plain_p):
        assert torch.allclose(a, alpha * b, atol=1e-6, rtol=1e-4)
    for a, b in zip(g_bal_q, g_plain_q):
        assert torch.allclose(a, (1 - alpha) * b, atol=1e-6, rtol=1e-4)


def test_balanced_loss_equals_trace_mean_field_value():
    gram = tiny()
    x, y = batch()
    pyro.set_rng_seed(4)
    ours = TruncatedBalancedELBO(alpha=0.8).loss(gram.model, gram.guide, x, y, n_sup=2)
    pyro.set_rng_seed(4)
    theirs = TraceMeanField_ELBO().loss(gram.model, gram.guide, x, y, n_sup=2)
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_surrogate_is_nll_plus_beta_kl_of_last_transition_only():
    gram = tiny(beta=0.3)
    x, y = batch()
    pyro.set_rng_seed(1)
    terms = TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, n_sup=1)
    mtr, gtr = terms.model_trace, terms.guide_trace
    nll = -mtr.nodes["y_0"]["fn"].log_prob(y).sum()
    kl = 0.3 * kl_divergence(gtr.nodes["eps_0_2"]["fn"], mtr.nodes["eps_0_2"]["fn"]).sum()
    assert terms.loss.item() == pytest.approx((nll + kl).item(), rel=1e-6)
    assert terms.nll == pytest.approx(nll.item(), rel=1e-6) and terms.kl == pytest.approx(kl.item(), rel=1e-6)
    # The first T-1 transitions were sampled from q without gradient and are masked out of the KL.
    for t in (0, 1):
        site = gtr.nodes[f"eps_0_{t}"]
        assert site["mask"] is False and not site["value"].requires_grad
    assert gtr.nodes["eps_0_2"]["value"].requires_grad


def test_no_gradient_reaches_previous_supervision_step():
    gram = tiny()
    x, y = batch()
    carry0 = gram.initial_carry(x.shape[:1])
    h = carry0.h.clone().requires_grad_(True)
    l = carry0.l.clone().requires_grad_(True)
    terms = TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, carry=type(carry0)(h, l), n_sup=1)
    terms.loss.backward()
    assert h.grad is None and l.grad is None
    assert gram.f_H[0].mlp.w2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode,truncated_from", [("gram", "posterior"), ("gram", "prior"), ("gram", "prior_mean"),
                                                ("deterministic", "posterior"), ("flat", "posterior")])
def test_shared_recursion_gives_the_same_loss_and_gradients(mode, truncated_from):
    gram = tiny(mode=mode, truncated_from=truncated_from)
    x, y = batch()
    elbo = TruncatedBalancedELBO(max_plate_nesting=1)
    params = [p for p in gram.parameters()]

    def run(shared):
        pyro.set_rng_seed(3)
        if shared:
            with gram.shared_recursion():
                loss = elbo.step_terms(gram.model, gram.guide, x, y, n_sup=1).loss
        else:
            loss = elbo.step_terms(gram.model, gram.guide, x, y, n_sup=1).loss
        return loss, grads(loss, params)

    (l1, g1), (l2, g2) = run(True), run(False)
    assert l1.item() == pytest.approx(l2.item(), rel=1e-6)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_shared_recursion_computes_f_L_and_f_H_once(monkeypatch):
    gram = tiny()
    x, y = batch()
    calls = {"n": 0}
    orig = gram.f_H.forward

    def counting(inp, links=None):
        calls["n"] += 1
        return orig(inp, links)

    monkeypatch.setattr(gram.f_H, "forward", counting)
    with gram.shared_recursion():
        TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, n_sup=1)
    assert calls["n"] == gram.cfg.T  # one f_H call per transition, not two
    calls["n"] = 0
    TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, n_sup=1)
    assert calls["n"] == 2 * gram.cfg.T


def test_shared_recursion_reuses_a_state_only_when_its_values_match():
    """The cache hit test: the same memory seen through another detached tensor hits without reading values, a
    copy with equal values hits, a changed value or another view of the same memory misses."""
    from gram_pyro.model import Carry, SharedRecursion

    h, l = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    rec, calls = SharedRecursion(), []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert rec.propose((0, 0), Carry(h, l), compute) == 1
    assert rec.propose((0, 0), Carry(h.detach(), l.detach()), compute) == 1
    assert rec.propose((0, 0), Carry(h.clone(), l.clone()), compute) == 1
    changed = h.clone()
    changed[1, 2, 3] += 1.0
    assert rec.propose((0, 0), Carry(changed, l), compute) == 2
    assert rec.propose((0, 0), Carry(h[:1], l[:1]), compute) == 3  # same data pointer, another shape


@pytest.mark.parametrize("truncated_from", ["posterior", "prior", "prior_mean"])
def test_shared_recursion_hands_the_model_the_guides_state_without_comparing_values(monkeypatch, truncated_from):
    """The model replays the guide's ε, so h = u + ε (Eq. 9) is the guide's tensor and the next transition's state
    matches by identity: no value comparison (``torch.equal``), and the model returns the guide's final h."""
    gram = tiny(T=3, truncated_from=truncated_from)
    x, y = batch()
    compared = []
    equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: compared.append(1) or equal(a, b))
    with gram.shared_recursion():
        terms = TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, n_sup=1)
    assert compared == []
    assert terms.model_trace.nodes["_RETURN"]["value"].h.data_ptr() == \
        terms.guide_trace.nodes["_RETURN"]["value"].h.data_ptr()


@pytest.mark.parametrize("truncated_from", ["prior", "prior_mean"])
def test_shared_recursion_scores_prior_drawn_transitions_with_the_guides_prior(truncated_from):
    """With truncated transitions drawn from the prior, the model reuses that distribution (one prior-head call
    per transition); at the prior mean only the μ head runs for them, never the σ head."""
    gram = tiny(T=3, truncated_from=truncated_from)
    x, y = batch()
    calls = {"forward": 0, "mean": 0, "sigma": 0}

    def counting(kind, fn):
        def wrapped(*args):
            calls[kind] += 1
            return fn(*args)
        return wrapped

    gram.prior.forward = counting("forward", gram.prior.forward)
    gram.prior.mean = counting("mean", gram.prior.mean)
    gram.prior.head.sigma.forward = counting("sigma", gram.prior.head.sigma.forward)
    with gram.shared_recursion():
        TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, n_sup=1)
    T = gram.cfg.T
    if truncated_from == "prior":  # T−1 truncated draws (guide, reused by the model) + the last transition
        assert calls == {"forward": T, "mean": 0, "sigma": T}
    else:  # the T−1 means, then the full prior of the last transition in the model
        assert calls == {"forward": 1, "mean": T - 1, "sigma": 1}


def test_full_trajectory_elbo_sums_every_transition():
    gram = tiny(T=2, N_sup=3)
    x, y = batch()
    out = full_trajectory_elbo(gram, x, y)
    assert len(out["kl_per_transition"]) == 6
    assert out["kl_total"] == pytest.approx(sum(out["kl_per_transition"]), rel=1e-5)
    assert out["elbo"] == pytest.approx(out["log_lik"] - out["kl_total"], rel=1e-6)
    assert all(k >= 0 for k in out["kl_per_transition"])
    assert out["elbo"] <= 0


def test_full_elbo_matches_surrogate_with_one_transition():
    gram = tiny(T=1, N_sup=1)
    x, y = batch()
    pyro.set_rng_seed(5)
    out = full_trajectory_elbo(gram, x, y)
    assert out["surrogate"] == pytest.approx(out["elbo"], rel=1e-5)


def test_beta_scales_the_kl_in_model_and_guide():
    gram = tiny()
    x, y = batch()
    elbo = TruncatedBalancedELBO()
    pyro.set_rng_seed(2)
    a = elbo.step_terms(gram.model, gram.guide, x, y, n_sup=1, beta=1.0)
    pyro.set_rng_seed(2)
    b = elbo.step_terms(gram.model, gram.guide, x, y, n_sup=1, beta=0.25)
    assert b.kl == pytest.approx(0.25 * a.kl, rel=1e-5)
    assert b.nll == pytest.approx(a.nll, rel=1e-6)


def test_lean_trace_path_without_validation_gives_the_same_loss():
    gram = tiny(prior="student_t")  # exercises the Monte-Carlo KL too
    perturb_heads(gram)
    x, y = batch()
    elbo = TruncatedBalancedELBO()
    pyro.set_rng_seed(9)
    checked = elbo.loss(gram.model, gram.guide, x, y, n_sup=2)
    pyro.enable_validation(False)
    try:
        pyro.set_rng_seed(9)
        lean = elbo.loss(gram.model, gram.guide, x, y, n_sup=2)
    finally:
        pyro.enable_validation(True)
    assert lean == pytest.approx(checked, rel=1e-6)


def test_update_program_changes_no_loss_and_no_gradient():
    """StepLoss runs model and guide as an update program: no pyro.param sites (its torch optimiser steps
    gram.parameters()) and no halt/value read-out sites; the loss and every gradient are the same as with them,
    and SVI's route keeps both."""
    from gram_pyro.model import update_program

    gram = tiny()
    x, y = batch()
    grads = []
    for full in (True, False):
        gram.zero_grad()
        pyro.set_rng_seed(0)
        with gram.shared_recursion(), (contextlib.nullcontext() if full else update_program()):
            terms = TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y, n_sup=1)
        terms.loss.backward()
        params = [n for n, s in terms.guide_trace.nodes.items() if s["type"] == "param"]
        assert bool(params) == full
        assert ("halt_0" in terms.model_trace.nodes) == full and ("value_0" in terms.model_trace.nodes) == full
        assert "y_hat_0" in terms.model_trace.nodes
        grads.append((float(terms.loss), [p.grad.clone() for p in gram.parameters() if p.grad is not None]))
    (loss_a, ga), (loss_b, gb) = grads
    assert loss_a == pytest.approx(loss_b, rel=1e-6) and len(ga) == len(gb)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(ga, gb))


@pytest.mark.parametrize("c", [0.0, 0.3, 1.0])
def test_grad_scaled_keeps_the_value_and_scales_the_gradient(c):
    loc = torch.randn(3, 4, requires_grad=True)
    d = dist.Normal(loc * 2, 1.0).to_event(1)
    v = torch.randn(3, 4)
    ref = torch.autograd.grad(d.log_prob(v).sum(), loc, retain_graph=True)[0]
    scaled = grad_scaled(d, c)
    assert type(scaled) is type(d) and torch.equal(scaled.log_prob(v), d.log_prob(v))
    out = scaled.log_prob(v).sum()
    got = torch.autograd.grad(out, loc)[0] if out.requires_grad else torch.zeros_like(loc)
    assert torch.allclose(got, c * ref)
