"""The scripts in examples/ run on a tiny budget, and the Pyro-user behaviours they rely on hold (issue 15)."""

import importlib.util
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from gram_pyro import OptimConfig, TruncatedBalancedELBO, list_presets, preset, run_preset
from gram_pyro.elbo import balanced_kl, detach_params
from gram_pyro.runconfig import build_run_config
from gram_pyro.update import StepLoss
from tests.helpers import batch, perturb_heads, tiny

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_example_is_tested_and_short():
    scripts = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    assert scripts == ["arviz_widths", "custom_prior", "predictive_check", "svi_loop"]
    assert len((EXAMPLES / "svi_loop.py").read_text().splitlines()) <= 60


def test_svi_loop_example():
    metrics = load("svi_loop").main(["--tiny"])
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["coverage"] <= 1.0


def test_predictive_check_example():
    out = load("predictive_check").main(["--tiny"])
    assert set(out) == {"posterior", "prior", "posterior_exact_match"}
    assert all(0.0 <= v <= 1.0 for v in out.values())


def test_custom_mixture_prior_example_trains():
    out = load("custom_prior").main(["--tiny"])
    assert torch.isfinite(torch.tensor([out["first_loss"], out["last_loss"]])).all()
    assert 0.0 <= out["accuracy"] <= 1.0


def test_arviz_example_summarises_validity_per_input():
    summary, coverage = load("arviz_widths").main(["--tiny", "--inputs", "4"])
    assert len(summary) == 4 and {"mean", "sd"} <= set(summary.columns)
    assert list(coverage["width"].values) == [1, 5, 20]


def test_predictive_with_a_guide_returns_the_observed_y_unless_unconditioned():
    """The recipe of examples/predictive_check.py: ``poutine.uncondition`` leaves y free."""
    gram = tiny()
    x, y = batch(5)
    with torch.no_grad():
        observed = Predictive(gram.model, guide=gram.guide, num_samples=3, return_sites=["y_1"])(x, y)["y_1"]
        free = Predictive(poutine.uncondition(gram.model), guide=gram.guide, num_samples=3,
                          return_sites=["y_1"])(x, y)["y_1"]
    assert (observed == y).all()
    assert not (free == y).all()  # untrained decoder: the draws differ from y


def test_halt_and_value_sites_have_the_instance_dimension_as_batch():
    gram = tiny()
    x, y = batch(5)
    tr = poutine.trace(gram.model).get_trace(x, y)
    for name in ("halt_0", "value_0"):
        assert tr.nodes[name]["fn"].batch_shape == (5,) and tr.nodes[name]["fn"].event_shape == ()


def test_detach_params_stops_gradients_of_a_mixture_and_keeps_its_value():
    loc = torch.randn(4, 3, 2, requires_grad=True)  # batch 4, 3 components, event 2
    logits = torch.zeros(4, 3, requires_grad=True)
    mix = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, 1.0).to_event(1))
    value = torch.randn(4, 2)
    sg = detach_params(mix)
    assert type(sg) is type(mix) and torch.allclose(sg.log_prob(value), mix.log_prob(value))
    assert sg.log_prob(value).grad_fn is None
    q = dist.Normal(torch.zeros(4, 2, requires_grad=True), 1.0).to_event(1)
    kl = balanced_kl(q, mix, value, alpha=0.8).sum()  # Monte-Carlo KL: no torch KL for (Normal, mixture)
    kl.backward()
    assert loc.grad is not None and logits.grad is not None
    assert mix.component_distribution.base_dist.loc is loc  # the original is untouched


def test_svi_step_loss_is_the_trainer_loss_times_the_batch():
    """``SVI.step`` sums one supervision step over the batch; the trainer logs it per instance (README)."""
    gram = tiny()
    perturb_heads(gram)
    x, y = batch(6)
    pyro.set_rng_seed(3)
    svi_loss = TruncatedBalancedELBO(alpha=gram.cfg.alpha).loss(gram.model, gram.guide, x, y, n_sup=1)
    pyro.set_rng_seed(3)
    _, stats, _, _ = StepLoss(gram, gram.cfg.alpha)(x, y, None, 0)
    assert svi_loss == pytest.approx(stats["loss"] * len(x), rel=1e-4)


@pytest.mark.parametrize("name", list_presets())
def test_python_preset_is_the_command_line_preset(name):
    """``run_preset(NAME)`` / ``preset(NAME)`` and ``--preset NAME`` are one thing (issue 15, item 2)."""
    sizes = {"vocab_size": 3, "seq_len": 64, "out_len": 64}
    cfg = build_run_config("nqueens-8", sizes, name)
    assert run_preset(name, task="nqueens-8", **sizes) == (cfg.model, cfg.optim, cfg.train)
    assert preset(name, task="nqueens-8", **sizes) == cfg.model


def test_the_optimiser_defaults_are_the_cpu_preset_and_paper_beta_lives_in_the_preset():
    assert OptimConfig() == run_preset("cpu")[1]
    assert preset("cpu").mixer == "mlp" and preset("cpu").truncated_from == "prior_mean"
    import gram_pyro.config

    assert not hasattr(gram_pyro.config, "PAPER_BETA")  # the core knows no task names
    assert preset("paper", task="nqueens-10").beta == 0.045
