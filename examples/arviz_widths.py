"""An ArviZ analysis of width samples: N prior trajectories per held-out input as an ArviZ DataTree.

``analysis.draw_samples`` draws N prior rollouts per input (the test-time sampler, gram-paper.md §3.1) and
guide rollouts with their log weights; ``analysis.build_datatree`` stores them with dims (chain, draw,
instance, ...), draw = trajectory.  ``arviz_stats.summary`` then gives each input's validity rate over the
draws (mean, sd, 89 % interval), and the ``diversity`` group holds coverage@N.
``python examples/arviz_widths.py [--tiny]``
"""

import argparse

import arviz_stats as azs
import pyro
import torch

import gram_tasks
from gram_analysis import RunData, build_datatree, draw_samples
from gram_pyro import GRAM, fit, run_preset


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=80)
    p.add_argument("--inputs", type=int, default=20, help="held-out inputs to analyse")
    p.add_argument("--tiny", action="store_const", const=2, dest="batches", help="2 batches (the tests)")
    args = p.parse_args(argv)
    pyro.set_rng_seed(0)
    task = gram_tasks.get_task("toy-perm-4")
    splits = task.build(seed=0)
    model_cfg, optim_cfg, _ = run_preset("cpu-tiny", vocab_size=task.vocab_size, seq_len=task.seq_len,
                                         out_len=task.out_len)
    gram = GRAM(model_cfg)
    records = fit(gram, torch.as_tensor(splits["train"].x), torch.as_tensor(splits["train"].y),
                  num_batches=args.batches, oc=optim_cfg)          # leaves the EMA weights in eval mode
    history = [{"kind": "train", **r} for r in records]             # one record per batch
    run = RunData("gram", task, gram, splits["test"], history)
    samples = draw_samples(run, num_draws=32, max_inputs=args.inputs)  # 32 trajectories per input
    dt = build_datatree([samples], [history], widths=(1, 5, 20))
    summary = azs.summary(dt, group="sample_stats", var_names=["valid"], kind="stats", ci_prob=0.89)
    print(summary.head(5))                                          # validity per input: mean, sd, 89 % ETI
    coverage = dt["diversity"]["coverage"].mean(["chain", "instance"])
    print({f"coverage@{int(w)}": round(float(c), 3) for w, c in zip(coverage["width"], coverage.values)})
    return summary, coverage


if __name__ == "__main__":
    main()
