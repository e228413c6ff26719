"""Posterior and prior predictive checks with ``pyro.infer.Predictive`` (gram-paper.md §2.4, §3.1).

Given ``y``, ``Predictive(gram.model, guide=gram.guide)`` would return the *observed* ``y_{n}`` (the model
conditions on the y it is passed).  The recipe: wrap the model in ``poutine.uncondition`` so every ``y_{n}`` is
drawn from p(y | z_n) while the guide, which sees y, supplies the ε sites.  Without a guide, ``Predictive``
samples the prior p(τ | x), the test-time sampler, and ``y=None`` leaves ``y_{n}`` free already.  The gap
between the two validities is the β diagnostic of §2.4.  ``python examples/predictive_check.py [--tiny]``
"""

import argparse

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import Predictive

import gram_tasks
from gram_pyro import GRAM, fit, run_preset


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=80)
    p.add_argument("--tiny", action="store_const", const=2, dest="batches", help="2 batches (the tests)")
    args = p.parse_args(argv)
    pyro.set_rng_seed(0)
    task = gram_tasks.get_task("toy-perm-4")
    splits = task.build(seed=0)
    model_cfg, optim_cfg, _ = run_preset("cpu-tiny", vocab_size=task.vocab_size, seq_len=task.seq_len,
                                         out_len=task.out_len)
    gram = GRAM(model_cfg)
    train, test = splits["train"], splits["test"]
    fit(gram, torch.as_tensor(train.x), torch.as_tensor(train.y), num_batches=args.batches, oc=optim_cfg,
        augment=task.augment)
    last = f"y_{model_cfg.N_sup - 1}"                       # the answer after the last supervision step
    rows = np.array([np.flatnonzero(test.group == g)[0] for g in range(len(test.inputs))])  # one target each
    x, y = torch.as_tensor(test.x[rows]), torch.as_tensor(test.y[rows])
    with torch.no_grad():
        post = Predictive(poutine.uncondition(gram.model), guide=gram.guide, num_samples=8,
                          return_sites=[last])(x, y)[last]          # [8, B, L]: reconstructions under q(τ | x, y)
        prior = Predictive(gram.model, num_samples=8, return_sites=[last])(x)[last]  # [8, B, L]: p(τ | x)
    valid = {name: float(task.validity(x.numpy(), d.transpose(0, 1).numpy()).mean())  # samples [B, 8, L]
             for name, d in (("posterior", post), ("prior", prior))}
    valid["posterior_exact_match"] = float((post == y).all(-1).float().mean())
    print({k: round(v, 3) for k, v in valid.items()})
    return valid


if __name__ == "__main__":
    main()
