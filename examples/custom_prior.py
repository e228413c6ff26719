"""A custom transition prior: a mixture of K Gaussians per token (``MixtureSameFamily``), trained with ``fit``.

p_θ(ε | u) = Σ_k π_k(u) N(μ_θ(u) + m_k, σ_θ(u)²): the component means are offsets ``m_k`` (parameters, not
constructor arguments of the distribution) around the paper's μ head, and the weights π(u) are read from
the first token of u.  No torch KL exists for (Normal, mixture), so the ELBO uses the one-sample estimate
log q − log p, balanced by the gradient-scaled copies that ``gram_pyro.elbo.grad_scaled`` builds for any
distribution (docs/custom_priors.md).  ``python examples/custom_prior.py [--tiny]``
"""

import argparse

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import gram_tasks
from gram_pyro import GRAM, TransitionPrior, fit, prior_rollouts, register_prior, run_preset
from gram_pyro.priors import LocScaleHead


@register_prior("mixture")
class MixturePrior(TransitionPrior):
    """K Gaussian components per token sharing σ_θ(u); batch shape u.shape[:-2], event shape [S, D]."""

    def __init__(self, cfg, components: int = 3):
        super().__init__(cfg)
        self.head = LocScaleHead(cfg)
        self.offsets = nn.Parameter(0.1 * torch.randn(int(components), cfg.D))
        self.weights = nn.Linear(cfg.D, int(components))

    def forward(self, u, t):
        loc, scale = self.head(u)                                   # [B, S, D] each
        locs = loc.unsqueeze(-3) + self.offsets[:, None, :]          # [B, K, S, D]
        comps = dist.Normal(locs, scale.unsqueeze(-3).expand_as(locs)).to_event(2)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.weights(u[..., 0, :])), comps)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--tiny", action="store_const", const=2, dest="batches", help="2 batches (the tests)")
    args = p.parse_args(argv)
    pyro.set_rng_seed(0)
    task = gram_tasks.get_task("toy-perm-4")
    splits = task.build(seed=0)
    model_cfg, optim_cfg, _ = run_preset("cpu-tiny", vocab_size=task.vocab_size, seq_len=task.seq_len,
                                         out_len=task.out_len, prior="mixture", prior_args=(("components", 3),))
    gram = GRAM(model_cfg)                                          # builds MixturePrior from the registry
    train, test = splits["train"], splits["test"]
    history = fit(gram, torch.as_tensor(train.x), torch.as_tensor(train.y), num_batches=args.batches, oc=optim_cfg)
    final = prior_rollouts(gram, torch.as_tensor(test.inputs), num_samples=20).final.numpy()
    out = {"first_loss": history[0]["loss"], "last_loss": history[-1]["loss"], **task.metrics(test.inputs, final)}
    print({k: round(v, 3) for k, v in out.items()})
    return out


if __name__ == "__main__":
    main()
