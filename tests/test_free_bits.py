"""Free bits (issue 16): each row's KL enters the surrogate as max(KL, λ), with no gradient below λ; logs stay plain."""

import pyro
import pytest
import torch

from gram_pyro.elbo import TruncatedBalancedELBO, balanced_kl
from gram_pyro.update import StepLoss
from tests.helpers import batch, perturb_heads, tiny, tiny_config


def traced(gram, x, y, seed=0):
    """One particle's traces of a two-step trajectory (KL at the last transition of each step)."""
    pyro.set_rng_seed(seed)
    terms = TruncatedBalancedELBO().step_terms(gram.model, gram.guide, x, y)
    return terms.model_trace, terms.guide_trace


def row_kls(gram, model_trace, guide_trace, alpha=0.8):
    """The balanced KL [B] of every unmasked latent site, and its β scale."""
    out = []
    for name, g in guide_trace.nodes.items():
        if g["type"] == "sample" and not g["is_observed"] and g["mask"] is not False:
            out.append((balanced_kl(g["fn"], model_trace.nodes[name]["fn"], g["value"], alpha), g["scale"]))
    return out


def prior_grads(gram, loss):
    params = list(gram.prior.parameters())
    return torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)


def model_with_traces(B=4):
    gram = tiny(truncated_from="posterior")
    perturb_heads(gram, 0.3)
    x, y = batch(B=B)
    return gram, *traced(gram, x, y)


def test_surrogate_equals_the_plain_loss_when_every_kl_exceeds_the_budget():
    gram, mt, gt = model_with_traces()
    smallest = min(float(kl.detach().min()) for kl, _ in row_kls(gram, mt, gt))
    assert smallest > 0.1
    plain = TruncatedBalancedELBO()._terms(mt, gt)
    freed = TruncatedBalancedELBO(free_bits=0.5 * smallest)._terms(mt, gt)
    assert torch.allclose(plain[1], freed[1]) and torch.allclose(plain[0], freed[0])
    assert torch.allclose(freed[2], plain[1])  # the logged KL is the plain KL


def test_kl_gradient_is_zero_for_rows_below_the_budget():
    gram, mt, gt = model_with_traces()
    kls = row_kls(gram, mt, gt)
    values = torch.cat([kl.detach() for kl, _ in kls]).sort().values
    lam = float(values[len(values) // 2 - 1 : len(values) // 2 + 1].mean())  # strictly between two rows' KLs
    _, kl_surrogate, kl_plain = TruncatedBalancedELBO(free_bits=lam)._terms(mt, gt)
    above = sum((scale * kl * (kl.detach() > lam)).sum() for kl, scale in kls)  # only rows above λ
    below = sum(int((kl <= lam).sum()) for kl, _ in kls)
    assert below > 0 and below < sum(len(kl) for kl, _ in kls)
    for got, want in zip(prior_grads(gram, kl_surrogate), prior_grads(gram, above)):
        assert (got is None and want is None) or torch.allclose(got, want, atol=1e-6)
    budget = sum(scale * (kl.detach() <= lam).sum() * lam for kl, scale in kls)  # value: λ for rows below it
    assert torch.allclose(kl_surrogate, above.detach() + budget)
    assert torch.allclose(kl_plain, sum((scale * kl).sum() for kl, scale in kls).detach())


def test_a_budget_above_every_kl_leaves_the_prior_without_gradient():
    gram, mt, gt = model_with_traces()
    largest = max(float(kl.detach().max()) for kl, _ in row_kls(gram, mt, gt))
    nll, kl_surrogate, _ = TruncatedBalancedELBO(free_bits=2 * largest)._terms(mt, gt)
    grads = prior_grads(gram, nll + kl_surrogate)  # truncated_from="posterior": the prior enters through the KL only
    assert all(g is None or not g.any() for g in grads)
    assert any(g is not None and g.any() for g in prior_grads(gram, TruncatedBalancedELBO()._terms(mt, gt)[1]))


def test_step_loss_uses_the_config_budget_and_logs_the_plain_kl():
    x, y = batch(B=4)
    stats = []
    for lam in (0.0, 1e4):
        torch.manual_seed(0)
        gram = tiny(free_bits=lam)
        step = StepLoss(gram, gram.cfg.alpha)
        assert step.elbo.free_bits == lam
        pyro.set_rng_seed(0)
        loss, s, _, _ = step(x, y, None, 0)
        stats.append((float(loss.detach()), s["kl"], s["loss"]))
    assert stats[1][1] == pytest.approx(stats[0][1], rel=1e-5) and stats[1][2] == pytest.approx(stats[0][2], rel=1e-5)
    assert stats[1][0] > stats[0][0] + 1e3  # the surrogate pays the budget


@pytest.mark.parametrize("bad", [-0.1, float("inf"), float("nan")])
def test_free_bits_must_be_a_finite_non_negative_number(bad):
    with pytest.raises(ValueError, match="free_bits"):
        tiny_config(free_bits=bad)
    with pytest.raises(ValueError, match="free_bits"):
        TruncatedBalancedELBO(free_bits=bad)
