"""Train GRAM with a plain ``pyro.infer.SVI`` loop: deep supervision, one update per supervision step, the carry.

``svi.step`` returns the loss of one supervision step summed over the batch (−log p(y | z_T) + β·KL of the
last transition, Eq. 14); ``gram_pyro.fit``'s records divide it by the batch size and average the N_sup steps
(and add the halt/LPRM heads' losses, which this loop leaves untrained).  ``python examples/svi_loop.py [--tiny]``
"""

import argparse

import pyro
import torch
from pyro.infer import SVI

import gram_tasks
from gram_pyro import GRAM, TruncatedBalancedELBO, preset, prior_rollouts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--tiny", action="store_const", const=3, dest="batches", help="3 batches (the tests)")
    args = p.parse_args(argv)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    task = gram_tasks.get_task("toy-perm-4")                        # complete a partial permutation (several answers)
    splits = task.build(seed=0)                                # {"train": Split, "test": Split}
    x, y = torch.as_tensor(splits["train"].x), torch.as_tensor(splits["train"].y)
    cfg = preset("cpu-tiny", vocab_size=task.vocab_size, seq_len=task.seq_len, out_len=task.out_len)
    gram = GRAM(cfg)
    held = {}                                                  # the carry z = (h, l) between supervision steps

    def model(x, y, n):                                        # supervision step n under p; keeps the carry out
        held["out"] = gram.model(x, y, carry=held.get("in"), n_sup=1, step_offset=n)

    def guide(x, y, n):                                        # the same step under q (it sees y)
        gram.guide(x, y, carry=held.get("in"), n_sup=1, step_offset=n)

    optim = pyro.optim.ClippedAdam({"lr": 2e-3, "clip_norm": 1.0})
    svi = SVI(model, guide, optim, TruncatedBalancedELBO(alpha=cfg.alpha))
    for batch in range(args.batches):
        rows = torch.randint(len(x), (64,))
        held.clear()
        for n in range(cfg.N_sup):                             # deep supervision: N_sup updates per batch
            with gram.shared_recursion():                      # the model reuses the guide's f_L/f_H outputs
                loss = svi.step(x[rows], y[rows], n)
            held["in"] = held["out"]                           # detached by the model: truncated BPTT
        if batch % 25 == 0 or batch == args.batches - 1:
            print(f"batch {batch:4d}  loss per instance, last step {loss / len(rows):.3f}")
    gram.eval()
    test = splits["test"]
    final = prior_rollouts(gram, torch.as_tensor(test.inputs), num_samples=20).final.numpy()
    metrics = task.metrics(test.inputs, final)                 # validity and coverage of 20 prior samples
    print({k: round(v, 3) for k, v in metrics.items()})
    return metrics


if __name__ == "__main__":
    main()
