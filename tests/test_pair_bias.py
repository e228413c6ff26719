"""The attention link bias routed by the input (issue 16): link matrix, attention bias, config, task structure."""

import json

import networkx as nx
import numpy as np
import pytest
import torch

import gram_tasks as tasks
from gram_cli import api
from gram_pyro.config import GRAMConfig
from gram_pyro.layers import Attention, Block, Stack, lecun_init_
from gram_pyro.model import GRAM
from gram_pyro.pair_bias import link_matrix
from gram_pyro.runconfig import ConfigError, RunConfig, build_run_config
from gram_tasks.graph_coloring import EDGE, NO_EDGE, VERTEX
from gram_tasks.graph_pairs import edge_links

N4 = edge_links(4, 4)  # vertex-coloring-4 layout: 4 vertex tokens, then the 6 upper-triangle edge tokens


def _cfg(**kw) -> GRAMConfig:
    base = dict(vocab_size=7, seq_len=10, out_len=4, n_prefix=1, D=16, n_heads=2, D_h=16, mixer="attention",
                pair_bias=True, pair_tokens=N4, pair_token_value=EDGE)
    return GRAMConfig(**{**base, **kw})


def _tokens(edges: set[tuple[int, int]]) -> list[int]:
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    return [VERTEX] * 4 + [EDGE if p in edges else NO_EDGE for p in pairs]


def test_link_matrix_of_a_hand_made_graph():
    cfg = _cfg()
    x = torch.tensor([_tokens({(0, 1), (2, 3)}), _tokens({(0, 3)})])
    A = link_matrix(x, cfg)
    assert A.shape == (2, 11, 11)
    want = torch.zeros(2, 11, 11)
    for b, (i, j) in [(0, (0, 1)), (0, (2, 3)), (1, (0, 3))]:
        want[b, 1 + i, 1 + j] = want[b, 1 + j, 1 + i] = 1.0  # content positions shifted by the one prefix token
    torch.testing.assert_close(A, want, rtol=0, atol=0)
    # any leading dimensions: width folded or not
    torch.testing.assert_close(link_matrix(x[:, None].expand(2, 3, 10), cfg), want[:, None].expand(2, 3, 11, 11))


def test_link_matrix_off_and_unfilled():
    x = torch.tensor([_tokens({(0, 1)})])
    assert link_matrix(x, _cfg(pair_bias=False, pair_tokens=())) is None
    with pytest.raises(ValueError, match="not filled in"):
        link_matrix(x, _cfg(pair_tokens=()))


def test_two_triples_on_one_pair_still_give_one():
    cfg = _cfg(pair_tokens=((4, 0, 1), (5, 1, 0)))
    A = link_matrix(torch.tensor([[VERTEX] * 4 + [EDGE, EDGE] + [NO_EDGE] * 4]), cfg)
    assert A.max() == 1.0 and A.sum() == 2.0


def _attention_pair(S=6, D=16, H=2):
    torch.manual_seed(0)
    plain, biased = Attention(D, H, S), Attention(D, H, S, pair_bias=True)
    biased.load_state_dict(plain.state_dict(), strict=False)
    return plain, biased


def test_zero_weight_is_plain_attention_and_links_change_only_linked_rows():
    plain, biased = _attention_pair()
    x = torch.randn(3, 6, 16)
    A = torch.zeros(3, 6, 6)
    A[:, 1, 4] = A[:, 4, 1] = 1.0
    with torch.no_grad():
        biased.pair_weight.zero_()
        torch.testing.assert_close(biased(x, A), plain(x))
        biased.pair_weight.fill_(2.0)
        torch.testing.assert_close(biased(x, torch.zeros_like(A)), plain(x))
        out, ref = biased(x, A), plain(x)
    unlinked = [0, 2, 3, 5]
    torch.testing.assert_close(out[:, unlinked], ref[:, unlinked])
    assert (out[:, [1, 4]] - ref[:, [1, 4]]).abs().max() > 1e-3


def test_link_weight_learns_and_per_head():
    _, biased = _attention_pair()
    x, A = torch.randn(2, 6, 16), torch.zeros(2, 6, 6)
    A[:, 0, 2] = A[:, 2, 0] = 1.0
    biased(x, A).square().sum().backward()
    assert biased.pair_weight.shape == (2,) and (biased.pair_weight.grad.abs() > 0).all()
    with torch.no_grad():
        biased.pair_weight.fill_(5.0)
    lecun_init_(biased)
    assert torch.equal(biased.pair_weight, torch.ones(2))


def test_stack_passes_the_links_to_every_block():
    torch.manual_seed(0)
    stack = Stack(2, D=16, D_h=16, S=6, mixer="attention", n_heads=2, seq_hidden=8, pair_bias=True)
    x, A = torch.randn(2, 6, 16), torch.zeros(2, 6, 6)
    torch.testing.assert_close(stack(x, A), stack(x))
    A[:, 0, 3] = A[:, 3, 0] = 1.0
    with torch.no_grad():
        stack[1].mixer.pair_weight.zero_()  # block 1 ignores the links, block 0 still sees them
        assert (stack(x, A) - stack(x)).abs().max() > 1e-3
        stack[0].mixer.pair_weight.zero_()
        torch.testing.assert_close(stack(x, A), stack(x))


def test_links_need_an_attention_built_for_them():
    with pytest.raises(ValueError, match="attention mixer"):
        Block(16, 16, 6, "mlp", 2, 8, pair_bias=True)
    with pytest.raises(ValueError, match="without pair_bias"):
        Attention(16, 2, 6)(torch.randn(1, 6, 16), torch.zeros(1, 6, 6))


@pytest.mark.parametrize("bad, match", [
    (dict(mixer="mlp"), "mixer='attention'"),
    (dict(family="trm"), "family='gram'"),
    (dict(pair_bias=False), "needs pair_bias"),
    (dict(pair_tokens=((10, 0, 1),)), "pair_tokens entries"),
    (dict(pair_tokens=((4, 0, 10),)), "pair_tokens entries"),
    (dict(pair_tokens=((4, 2, 2),)), "pair_tokens entries"),
    (dict(pair_tokens=((4, 0),)), "pair_tokens entries"),
    (dict(pair_tokens=((4, 0, True),)), "pair_tokens entries"),
    (dict(pair_tokens=((4, 0, 1), (4, 0, 1))), "repeated"),
    (dict(pair_token_value=7), "pair_token_value"),
])
def test_config_refuses_bad_pair_structure(bad, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**bad)


def test_defaults_are_off():
    c = GRAMConfig()
    assert not c.pair_bias and c.pair_tokens == ()
    assert GRAMConfig(mixer="mlp").pair_tokens == ()


SIZES = {"vocab_size": 7, "seq_len": 10, "out_len": 4}


def test_config_round_trip_through_set_and_config_json():
    sets = ["model.mixer=attention", "model.pair_bias=true", "model.pair_tokens=4:0:1, 9:2:3", "model.pair_token_value=2"]
    cfg = build_run_config("vertex-coloring-4", SIZES, "cpu", sets)
    assert cfg.model.pair_tokens == ((4, 0, 1), (9, 2, 3)) and cfg.model.pair_token_value == 2
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.identity_hash() == cfg.identity_hash()
    assert back.to_dict()["model"]["pair_tokens"] == [[4, 0, 1], [9, 2, 3]]
    for bad in ("4:0", "4:0:x", "4:0:1.5"):
        with pytest.raises(ConfigError, match="p:a:b integer triples"):
            build_run_config("vertex-coloring-4", SIZES, "cpu", [*sets[:2], f"model.pair_tokens={bad}"])
    with pytest.raises(ConfigError, match="needs pair_bias"):
        build_run_config("vertex-coloring-4", SIZES, "cpu", ["model.mixer=attention", "model.pair_tokens=4:0:1"])
    with pytest.raises(ConfigError, match="mixer='attention'"):  # the cpu preset's sequence-MLP mixer
        build_run_config("vertex-coloring-4", SIZES, "cpu", ["model.pair_bias=true"])


@pytest.mark.parametrize("name", ["vertex-coloring-8", "graph-coloring-8"])
def test_task_pair_structure_links_exactly_the_edges(name):
    task = tasks.get_task(name)
    sets = ["model.mixer=attention", "model.pair_bias=true"]
    config = api.with_pair_structure(build_run_config(name, api.task_sizes(task), "cpu", sets), task)
    m = config.model
    assert len(m.pair_tokens) == 28 and m.pair_token_value == EDGE
    g = nx.gnp_random_graph(8, 0.4, seed=3)
    while not nx.is_connected(g) or len(g.edges) < 6:
        g = nx.gnp_random_graph(8, 0.4, seed=len(g.edges) + 11)
    x = torch.as_tensor(task.encode_input(g))
    g = task._nx_graph(x.numpy())  # the graph as encoded (3-colourable: encode_input checked it)
    A = link_matrix(x[None], m)[0]
    p, L = m.n_prefix, m.L_out
    torch.testing.assert_close(A[p : p + L, p : p + L], torch.as_tensor(nx.to_numpy_array(g, nodelist=range(8)),
                                                                     dtype=torch.float32))
    assert A.sum() == 2 * g.number_of_edges()  # nothing outside the decode positions
    # augmentation relabels vertices: the links move with the edge tokens
    xa, _ = task.augment(x.numpy()[None], np.full((1, 8), 3), np.random.default_rng(0))
    assert link_matrix(torch.as_tensor(xa), m).sum() == A.sum()


def test_cli_fills_only_on_request_and_refuses_tasks_without_structure():
    task = tasks.get_task("vertex-coloring-8")
    off = build_run_config("vertex-coloring-8", api.task_sizes(task), "cpu", [])
    assert api.with_pair_structure(off, task) is off
    nq = tasks.get_task("nqueens-8")
    on = build_run_config("nqueens-8", api.task_sizes(nq), "cpu", ["model.mixer=attention", "model.pair_bias=true"])
    with pytest.raises(ConfigError, match="no pair structure"):
        api.with_pair_structure(on, nq)


def _wired() -> bool:
    gram = GRAM(_cfg())
    return any(n.endswith("pair_weight") for n, _ in gram.named_parameters())


@pytest.mark.skipif(not _wired(), reason="gram_pyro/model.py does not build its stacks with pair_bias yet")
def test_gram_routes_by_the_links():
    torch.manual_seed(0)
    gram = GRAM(_cfg(mode="deterministic"))
    x = torch.tensor([_tokens({(0, 1), (2, 3)}), _tokens({(0, 3)})])
    ref = gram.model(x).h
    with torch.no_grad():
        for n, p in gram.named_parameters():
            if n.endswith("pair_weight"):
                p.zero_()
    assert (gram.model(x).h - ref).abs().max() > 1e-4


def test_the_cpu_graph_preset_fills_the_pair_structure_and_refuses_a_task_without_one(tmp_path):
    """``--preset cpu-graph``: the cpu preset with the pair-biased attention and repair training (prior carry,
    LPRM on prior states); the CLI fills the task's links."""
    from gram_pyro.runconfig import ConfigError, build_run_config

    task = tasks.get_task("vertex-coloring-6")
    cfg = api.with_pair_structure(build_run_config(task.name, api.task_sizes(task), "cpu-graph"), task)
    assert cfg.model.pair_bias and cfg.model.mixer == "attention"
    assert cfg.model.prior_carry == 0.5 and cfg.model.lprm_on_prior
    assert len(cfg.model.pair_tokens) == 6 * 5 // 2
    queens = tasks.get_task("nqueens-6")
    with pytest.raises(ConfigError, match="states no pair structure"):
        api.with_pair_structure(build_run_config(queens.name, api.task_sizes(queens), "cpu-graph"), queens)
