"""Options added for issue 16 (GRAM beyond N-Queens 8): the prior-rollout carry in training and the vertex-major
graph-colouring encoding.  Defaults keep the paper's behaviour."""

import networkx as nx
import numpy as np
import pyro
import pytest
import torch
import yaml

import gram_tasks as tasks
from gram_pyro.config import GRAMConfig
from gram_pyro.model import GRAM
from gram_pyro.runconfig import CONFIG_DIR
from gram_pyro.update import StepLoss, prior_step
from gram_tasks.graph_coloring import VERTEX, GraphColoringTask
from tests.helpers import batch, perturb_heads, tiny_config


def test_defaults_are_the_papers():
    assert GRAMConfig().prior_carry == 0.0
    cpu = yaml.safe_load((CONFIG_DIR / "cpu.yaml").read_text())
    assert "prior_carry" not in cpu["model"]
    assert tasks.get_task("graph-coloring-8").seq_len == 28


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_prior_carry_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="prior_carry"):
        GRAMConfig(prior_carry=bad)


def _step(gram, x, y, carry, n, seed):
    pyro.set_rng_seed(seed)
    return StepLoss(gram, 0.8)(x, y, carry, n)


def test_prior_carry_replaces_the_last_rows_by_a_prior_rollout_and_leaves_the_loss():
    torch.manual_seed(0)
    base = GRAM(tiny_config())
    perturb_heads(base)
    mixed = GRAM(tiny_config(prior_carry=0.5))
    mixed.load_state_dict(base.state_dict())
    x, y = batch(4, base.cfg)
    loss0, stats0, carry0, _ = _step(base, x, y, None, 0, 1)
    loss1, stats1, carry1, _ = _step(mixed, x, y, None, 0, 1)
    assert torch.allclose(loss0, loss1) and stats0 == stats1  # the step's own loss is the guide's
    assert carry1.h.shape == carry0.h.shape and carry1.l.shape == carry0.l.shape
    assert torch.allclose(carry1.h[:2], carry0.h[:2]) and torch.allclose(carry1.l[:2], carry0.l[:2])
    assert not torch.allclose(carry1.h[2:], carry0.h[2:])  # the guide sees y, the prior does not
    # the replaced rows are exactly a prior rollout of the step from the same state (same RNG stream)
    pyro.set_rng_seed(2)
    got, y_hat = prior_step(mixed, x[2:], None, 0, 1)
    pyro.set_rng_seed(2)
    with torch.no_grad():
        want = mixed.model(x[2:], None, n_sup=1, step_offset=0)
    assert torch.allclose(got.h, want.h) and torch.allclose(got.l, want.l) and y_hat.shape == y[2:].shape
    # a later step continues from a given carry, keeping its shape
    _, _, carry2, _ = _step(mixed, x, y, carry1, 1, 3)
    assert carry2.h.shape == carry1.h.shape and not carry2.h.requires_grad


def test_prior_carry_is_a_no_op_for_the_deterministic_baseline():
    cfg = tiny_config(mode="deterministic")
    base, mixed = GRAM(cfg), GRAM(cfg.replace(prior_carry=1.0))
    mixed.load_state_dict(base.state_dict())
    x, y = batch(3, cfg)
    (_, _, c0, _), (_, _, c1, _) = _step(base, x, y, None, 0, 1), _step(mixed, x, y, None, 0, 1)
    assert torch.allclose(c0.h, c1.h)


def test_lprm_on_prior_fits_the_value_head_on_prior_states():
    with pytest.raises(ValueError, match="lprm_on_prior"):
        GRAMConfig(lprm_on_prior=True)
    torch.manual_seed(0)
    guide_fit = GRAM(tiny_config(prior_carry=0.5))
    perturb_heads(guide_fit)
    prior_fit = GRAM(tiny_config(prior_carry=0.5, lprm_on_prior=True))
    prior_fit.load_state_dict(guide_fit.state_dict())
    x, y = batch(4, guide_fit.cfg)
    grads = []
    for gram in (guide_fit, prior_fit):
        loss, stats, _, _ = _step(gram, x, y, None, 0, 1)
        loss.backward()
        grads.append(gram.value_head.weight.grad.clone())
        assert np.isfinite(stats["aux"])
    assert not torch.allclose(grads[0], grads[1])  # a different target state for the value head


# ------------------------------------------------------------------ vertex-major graph-colouring encoding
@pytest.fixture(scope="module")
def pair():
    paper, vertex = GraphColoringTask(6, 1500, 100), GraphColoringTask(6, 1500, 100, vertex_tokens=True)
    return paper, vertex, paper.build(0), vertex.build(0)


def test_vertex_encoding_holds_the_same_graphs_and_answers(pair):
    paper, vertex, a, b = pair
    assert (vertex.name, vertex.seq_len, vertex.out_len, vertex.vocab_size) == ("vertex-coloring-6", 6 + 15, 6, 7)
    assert (b["train"].x[:, :6] == VERTEX).all()
    assert (b["train"].x[:, 6:] == a["train"].x).all() and (b["train"].y == a["train"].y).all()
    for sa, sb in zip(a["test"].solutions, b["test"].solutions):
        assert (sa == sb).all()
    assert tasks.get_task("vertex-coloring-10").seq_len == 10 + 45


def test_vertex_encoding_verifier_and_conflicts_agree_with_the_papers(pair):
    paper, vertex, a, b = pair
    rng = np.random.default_rng(0)
    ys = rng.integers(3, 6, size=(100, 6))
    xa, xb = a["test"].inputs[:100], b["test"].inputs[:100]
    assert [paper.verify(x, y) for x, y in zip(xa, ys)] == [vertex.verify(x, y) for x, y in zip(xb, ys)]
    assert (paper.conflict_edges(xa, ys[:, None]) == vertex.conflict_edges(xb, ys[:, None])).all()
    assert (vertex.solutions(xb[0]) == paper.solutions(xa[0])).all()


def test_vertex_encoding_augments_like_the_papers(pair):
    paper, vertex, a, b = pair
    xa, ya = paper.augment(a["train"].x[:50], a["train"].y[:50], np.random.default_rng(3))
    xb, yb = vertex.augment(b["train"].x[:50], b["train"].y[:50], np.random.default_rng(3))
    assert (xb[:, :6] == VERTEX).all() and (xb[:, 6:] == xa).all() and (yb == ya).all()
    assert all(vertex.verify(x, y) for x, y in zip(xb, yb))


def test_vertex_encoding_input_round_trip_and_malformed_tokens(pair):
    paper, vertex, _, _ = pair
    g = nx.cycle_graph(5)
    xv = vertex.encode_input(g)
    assert (xv[:6] == VERTEX).all() and (xv[6:] == paper.encode_input(g)).all()
    assert vertex.verify(xv, vertex.solutions(xv)[0])
    assert not vertex.verify(paper.encode_input(g), vertex.solutions(xv)[0])  # wrong length
    bad = xv.copy()
    bad[0] = 1  # a vertex token that is not one
    assert not vertex.verify(bad, vertex.solutions(xv)[0]) and len(vertex.solutions(bad)) == 0
