"""Custom transition priors: the extension point trains with analytic or Monte-Carlo KL."""

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from gram_pyro import GRAM, PRIORS, TransitionPrior, register_prior
from gram_pyro.priors import SigmaSchedulePrior
from gram_pyro.config import OptimConfig
from gram_pyro.trainer import fit
from tests.helpers import batch, tiny, tiny_config


def toy_data(B=64, seed=0):
    """A learnable map: the answer is the input's first four tokens shifted by one."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(2, 5, (B, 5), generator=g)
    return x, x[:, :4] + 1


@pytest.mark.parametrize("prior,args", [("laplace", ()), ("student_t", (("df", 3.0),)), ("sigma_schedule", ())])
def test_custom_prior_trains_with_the_elbo_going_down(prior, args):
    gram = tiny(prior=prior, prior_args=args, N_sup=2, T=2, K=1)
    x, y = toy_data()
    hist = fit(gram, x, y, num_batches=12, oc=OptimConfig(lr=1e-2, batch_size=32, warmup=1))
    first, last = hist[0]["loss"], hist[-1]["loss"]
    assert last < 0.5 * first, (first, last)


def test_laplace_prior_site_and_analytic_kl():
    gram = tiny(prior="laplace")
    x, _ = batch()
    fn = poutine.trace(gram.model).get_trace(x).nodes["eps_0_0"]["fn"]
    assert isinstance(fn.base_dist, dist.Laplace)
    q = dist.Normal(torch.zeros(3, gram.cfg.S, gram.cfg.D), 0.1).to_event(2)
    torch.distributions.kl_divergence(q, fn)  # registered: the ELBO uses it analytically


def test_sigma_schedule_shrinks_with_transition_index():
    prior = SigmaSchedulePrior(tiny_config(), decay=0.5, floor=0.1)
    u = torch.randn(2, 6, 16)
    s0, s2, s9 = (prior(u, t).base_dist.scale for t in (0, 2, 9))
    assert torch.allclose(s2, 0.25 * s0) and torch.allclose(s9, 0.1 * s0)


def test_user_prior_by_registration_instance_and_subclass():
    @register_prior("test_wide")
    class Wide(TransitionPrior):
        def forward(self, u, t):
            return dist.Normal(torch.zeros_like(u), 2.0).to_event(2)

    try:
        x, _ = batch()
        for gram in (tiny(prior="test_wide"), GRAM(tiny_config(), prior=Wide(tiny_config()))):
            fn = poutine.trace(gram.model).get_trace(x).nodes["eps_0_0"]["fn"]
            assert (fn.base_dist.scale == 2.0).all()

        class Sub(GRAM):
            def transition_prior(self, u, t):
                return dist.Normal(torch.zeros_like(u), 0.5 + t).to_event(2)

        nodes = poutine.trace(Sub(tiny_config()).model).get_trace(x).nodes
        assert (nodes["eps_1_2"]["fn"].base_dist.scale == 0.5 + 5).all()
    finally:
        PRIORS.pop("test_wide")


def test_unknown_prior_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prior 'nope'"):
        tiny(prior="nope")



@pytest.mark.parametrize("prior,args", [("gaussian", ()), ("laplace", ()), ("student_t", (("df", 3.0),)),
                                        ("sigma_schedule", ()), ("lowrank", (("rank", 2),))])
def test_prior_mean_is_the_mean_of_the_prior_distribution(prior, args):
    """``TransitionPrior.mean`` (the μ head alone, for truncated_from=prior_mean) equals the distribution's mean."""
    gram = tiny(prior=prior, prior_args=args)
    torch.nn.init.normal_(gram.prior.head.mu.w2.weight)  # a non-zero μ head
    u = torch.randn(3, gram.cfg.S, gram.cfg.D)
    assert torch.allclose(gram.prior.mean(u, 2), gram.prior(u, 2).mean, rtol=1e-6, atol=1e-7)


def test_a_prior_with_its_own_forward_gets_the_mean_of_what_it_returns():
    class Shifted(PRIORS["gaussian"]):
        def forward(self, u, t):
            loc, scale = self.head(u)
            return dist.Normal(loc + 1.0, scale).to_event(2)

    gram = tiny()
    prior = Shifted(gram.cfg)
    u = torch.randn(2, gram.cfg.S, gram.cfg.D)
    assert torch.allclose(prior.mean(u, 0), prior.head.loc(u) + 1.0)
