"""The low-rank-plus-diagonal transition prior (issue 16): shapes, densities and KL against dense Gaussians, rollouts."""

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch.distributions import MultivariateNormal, kl_divergence

import gram_pyro
from gram_pyro.elbo import balanced_kl
from gram_pyro.lowrank import LowRankSequenceNormal
from gram_pyro.priors import LowRankPrior
from gram_pyro.update import OptimConfig
from gram_pyro.trainer import fit
from tests.helpers import batch, perturb_heads, tiny, tiny_config


def random_lowrank(B=3, S=4, D=5, r=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    loc, W = torch.randn(B, S, D, generator=g), 0.5 * torch.randn(B, S, D, r, generator=g)
    diag = torch.rand(B, S, D, generator=g) + 0.1
    return loc, W, diag


def dense(loc, W, diag) -> MultivariateNormal:
    """The same Gaussian with an explicit [S·D, S·D] covariance."""
    Wf = W.flatten(-3, -2)
    return MultivariateNormal(loc.flatten(-2), Wf @ Wf.mT + torch.diag_embed(diag.flatten(-2)))


def test_shapes_mean_and_expand():
    loc, W, diag = random_lowrank()
    p = LowRankSequenceNormal(loc, W, diag)
    assert p.batch_shape == (3,) and p.event_shape == (4, 5) and p.event_dim == 2
    x = p.rsample((7,))
    assert x.shape == (7, 3, 4, 5) and p.log_prob(x).shape == (7, 3)
    assert torch.equal(p.mean, loc)
    assert torch.allclose(p.variance, diag + W.pow(2).sum(-1))
    assert p.expand((2, 3)).rsample().shape == (2, 3, 4, 5)


def test_log_prob_equals_the_dense_mvn():
    loc, W, diag = random_lowrank()
    p, ref = LowRankSequenceNormal(loc, W, diag), dense(loc, W, diag)
    x = p.sample((5,))
    assert torch.allclose(p.log_prob(x), ref.log_prob(x.flatten(-2)), atol=1e-4)


def test_analytic_kl_equals_the_dense_kl_and_a_monte_carlo_estimate():
    loc, W, diag = random_lowrank()
    p = LowRankSequenceNormal(loc, W, diag)
    g = torch.Generator().manual_seed(1)
    mq, sq = torch.randn(3, 4, 5, generator=g), torch.rand(3, 4, 5, generator=g) + 0.2
    q = dist.Normal(mq, sq).to_event(2)
    kl = kl_divergence(q, p)
    ref = kl_divergence(MultivariateNormal(mq.flatten(-2), torch.diag_embed(sq.flatten(-2) ** 2)), dense(loc, W, diag))
    assert kl.shape == (3,) and torch.allclose(kl, ref, rtol=1e-4)
    eps = q.sample((20000,))
    mc = (q.log_prob(eps) - p.log_prob(eps)).mean(0)
    assert torch.allclose(kl, mc, rtol=0.05)


def test_kl_of_another_family_falls_back_to_monte_carlo():
    loc, W, diag = random_lowrank()
    q = dist.Laplace(loc, 1.0).to_event(2)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, LowRankSequenceNormal(loc, W, diag))


def test_lowrank_prior_site_correlates_positions_and_its_kl_is_analytic():
    gram = tiny(prior="lowrank", prior_args=(("rank", 3),))
    assert isinstance(gram.prior, LowRankPrior)
    x, y = batch()
    fn = poutine.trace(gram.model).get_trace(x).nodes["eps_0_2"]["fn"]
    S, D = gram.cfg.S, gram.cfg.D
    assert isinstance(fn, LowRankSequenceNormal) and fn.batch_shape == (3,) and fn.event_shape == (S, D)
    assert fn.flat.cov_factor.shape == (3, S * D, 3) and fn.flat.cov_factor.abs().sum() > 0  # not a diagonal prior
    q = dist.Normal(torch.zeros(3, S, D), 0.1).to_event(2)
    assert torch.isfinite(kl_divergence(q, fn)).all()


def test_balanced_kl_sends_alpha_to_the_prior_only():
    gram = tiny(prior="lowrank")
    perturb_heads(gram)
    u = torch.randn(2, gram.cfg.S, gram.cfg.D)
    p, q = gram.prior(u, 0), gram.posterior(u, torch.zeros_like(u))
    balanced_kl(q, p, q.rsample(), alpha=1.0).sum().backward()
    assert gram.prior.gain.grad.abs() > 0 and gram.prior.factor.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in gram.posterior.parameters())


def test_mean_method_equals_the_distribution_mean():
    gram = tiny(prior="lowrank")
    perturb_heads(gram)
    u = torch.randn(2, gram.cfg.S, gram.cfg.D)
    assert torch.allclose(gram.prior.mean(u, 0), gram.prior(u, 0).mean)


@pytest.mark.parametrize("truncated_from", ["posterior", "prior", "prior_mean"])
def test_prior_rollouts_run_with_the_lowrank_prior(truncated_from):
    gram = tiny(prior="lowrank", truncated_from=truncated_from)
    perturb_heads(gram)
    x, _ = batch(B=2)
    for tau in (1.0, 0.5, 0.0):
        r = gram_pyro.prior_rollouts(gram, x, num_samples=4, depth=3, tau=tau)
        assert r.answers.shape == (2, 4, 3, gram.cfg.L_out) and r.final.shape == (2, 4, gram.cfg.L_out)


def test_lowrank_prior_trains_with_the_elbo_going_down():
    gram = tiny(prior="lowrank", prior_args=(("rank", 2),), N_sup=2, T=2, K=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(2, 5, (64, 5), generator=g)
    hist = fit(gram, x, x[:, :4] + 1, num_batches=12, oc=OptimConfig(lr=1e-2, batch_size=32, warmup=1))
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"], (hist[0]["loss"], hist[-1]["loss"])


@pytest.mark.parametrize("args", [(("rank", 0),), (("rank", 1.5),), (("factor_init", 0.0),)])
def test_bad_lowrank_arguments_are_clear_errors(args):
    with pytest.raises(ValueError, match="lowrank needs"):
        LowRankPrior(tiny_config(), **dict(args))
