"""Rollout chunking and the no-autograd SwiGLU path (issue 18): faster, bounded memory, the same numbers.

The guarantee tested: how trajectories are split into chunks changes which random numbers each one gets, never
the computation, so a model without noise (the deterministic mode, or GRAM at τ = 0) gives the same answers and
values, to float32 round-off, for any chunk size; a model that draws no latent is run once per input and gives
the answers and values of running its N copies; the in-place SwiGLU of rollouts computes the same values as
the autograd path in the same process.
"""

import pytest
import torch

from gram_pyro import prior_rollouts
from gram_pyro.inference import CHUNK_ELEMENTS, rows_per_chunk
from gram_pyro.layers import SwiGLU
from tests.helpers import batch, perturb_heads, tiny, tiny_config


def test_rows_per_chunk_follows_the_widest_activation():
    small, wide = tiny_config(mixer="mlp"), tiny_config(mixer="mlp", D_h=512)
    assert rows_per_chunk(wide) < rows_per_chunk(small)
    assert rows_per_chunk(small) == CHUNK_ELEMENTS // max(small.S * 2 * small.D_h, small.D * 2 * small.seq_hidden,
                                                          small.L_out * small.vocab_size)
    att = tiny_config(mixer="attention")
    assert rows_per_chunk(att) * att.S * (3 * att.D + att.n_heads * att.S) <= CHUNK_ELEMENTS
    assert rows_per_chunk(tiny_config(D_h=CHUNK_ELEMENTS)) == 1  # never zero rows


@pytest.mark.parametrize("mode,tau", [("deterministic", 1.0), ("gram", 0.0)])
def test_chunk_size_changes_no_noise_free_answer(mode, tau):
    torch.manual_seed(0)
    gram = tiny(mode=mode, mixer="mlp")
    if gram.cfg.stochastic:
        perturb_heads(gram)
    gram.eval()
    x, _ = batch(B=5)
    runs = [prior_rollouts(gram, x, num_samples=3, depth=3, chunk_size=c, tau=tau) for c in (1, 4, None)]
    for r in runs[1:]:
        assert torch.equal(r.answers, runs[0].answers)
        assert torch.allclose(r.value, runs[0].value, rtol=1e-5, atol=1e-6)
        assert torch.allclose(r.halt_prob, runs[0].halt_prob, rtol=1e-5, atol=1e-6)


def test_a_model_without_latents_runs_once_per_input_with_the_answers_of_its_copies():
    torch.manual_seed(0)
    det = tiny(mode="deterministic", mixer="mlp").eval()
    x, _ = batch(B=4)
    assert not det.draws_latents and tiny().draws_latents
    once = prior_rollouts(det, x, num_samples=3, depth=3, halting=True)
    copies = prior_rollouts(det, x.repeat_interleave(3, dim=0), num_samples=1, depth=3, halting=True)
    assert torch.equal(once.answers.flatten(0, 1), copies.answers.flatten(0, 1))
    assert torch.equal(once.halt_step.flatten(), copies.halt_step.flatten())
    assert torch.allclose(once.value.flatten(0, 1), copies.value.flatten(0, 1), rtol=1e-5, atol=1e-6)


def test_chunk_size_must_be_positive():
    x, _ = batch(B=2)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        prior_rollouts(tiny(), x, num_samples=2, chunk_size=0)


def test_swiglu_in_place_path_matches_the_autograd_path():
    torch.manual_seed(0)
    f, v = SwiGLU(8, 16), torch.randn(4, 5, 8)
    with torch.no_grad():
        fast = f(v)
    slow = f(v)
    assert slow.requires_grad and not fast.requires_grad
    assert torch.allclose(fast, slow.detach(), rtol=1e-6, atol=1e-7)


def test_swiglu_computes_w2_of_silu_w1x_times_w3x_from_the_halves_of_w13():
    """The two matmuls on w13's halves (issue 18) are the SwiGLU of one [2·D_h] projection chunked in two: the same
    output and gradients up to float rounding (1e-5 relative)."""
    torch.manual_seed(0)
    f, v = SwiGLU(8, 16), torch.randn(4, 5, 8, requires_grad=True)
    a, b = f.w13(v).chunk(2, dim=-1)
    ref = f.w2(torch.nn.functional.silu(a) * b)
    ref_grads = torch.autograd.grad(ref.square().sum(), (v, f.w13.weight, f.w2.weight))
    out = f(v)
    grads = torch.autograd.grad(out.square().sum(), (v, f.w13.weight, f.w2.weight))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
