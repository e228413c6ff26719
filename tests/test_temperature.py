"""Sampling temperature τ (gram_pyro.inference.temperature): a test-time handler, not part of the paper."""

import pytest
import torch
from pyro import poutine

from gram_pyro import prior_rollouts, temperature
from tests.helpers import batch, perturb_heads, tiny


def first_eps(model, x, seed=7):
    return poutine.trace(poutine.seed(model, seed)).get_trace(x).nodes["eps_0_0"]


def test_draws_are_scaled_around_the_prior_mean():
    gram = tiny(sigma_init=0.5)
    perturb_heads(gram)  # a non-zero, input-dependent prior mean
    x, _ = batch()
    plain = first_eps(gram.model, x)
    mean = plain["fn"].mean
    assert torch.equal(first_eps(temperature(1.0)(gram.model), x)["value"], plain["value"])
    hot = first_eps(temperature(0.5)(gram.model), x)
    assert torch.allclose(hot["value"], mean + 0.5 * (plain["value"] - mean), atol=1e-6)
    cold = first_eps(temperature(0.0)(gram.model), x)
    assert torch.equal(cold["value"], mean)


def test_observed_sites_are_left_alone():
    gram = tiny(sigma_init=0.5)
    x, y = batch()
    tr = poutine.trace(poutine.seed(temperature(0.3)(gram.model), 0)).get_trace(x, y)
    last = f"y_{gram.cfg.N_sup - 1}"
    assert tr.nodes[last]["is_observed"] and torch.equal(tr.nodes[last]["value"], y)
    assert type(tr.nodes[last]["fn"]).__name__ == "Independent"


@pytest.mark.parametrize("prior,args", [("gaussian", ()), ("student_t", (("df", 3.0),))])
def test_zero_temperature_makes_every_trajectory_identical(prior, args):
    gram = tiny(prior=prior, prior_args=args, sigma_init=0.9)
    perturb_heads(gram)
    with torch.no_grad():  # a decoder that reacts to h, so noise would show in the answers
        gram.decoder.weight.mul_(20)
    x, _ = batch(B=2)
    cold = prior_rollouts(gram, x, num_samples=8, depth=3, tau=0.0)
    assert (cold.answers == cold.answers[:, :1]).all()
    warm = prior_rollouts(gram, x, num_samples=8, depth=3, tau=1.0)
    assert any(len(torch.unique(s, dim=0)) > 1 for s in warm.final)


def test_bad_temperatures_and_infinite_means_are_clear_errors():
    for bad in (-0.1, float("nan"), float("inf"), "0.5"):
        with pytest.raises(ValueError, match="temperature must be"):
            temperature(bad)
    gram = tiny(prior="student_t", prior_args=(("df", 1.0),))  # Cauchy: no mean
    x, _ = batch()
    with pytest.raises(ValueError, match="finite mean"):
        prior_rollouts(gram, x, num_samples=2, tau=0.5)
