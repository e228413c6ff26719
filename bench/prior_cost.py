"""CPU time of one supervision-step update (StepLoss forward + backward), gaussian vs lowrank prior, on the
model of a run (its config.json), batch 64, one thread: python bench/prior_cost.py RUN/config.json (issue 16)."""
import json, statistics, sys, time
import torch
from gram_pyro import GRAM, GRAMConfig
from gram_pyro.update import StepLoss

torch.set_num_threads(1)
m = json.load(open(sys.argv[1]))['model']
m = {k: (tuple(map(tuple, v)) if k in ('prior_args', 'pair_tokens') else v) for k, v in m.items()}
x = torch.randint(0, m['vocab_size'], (64, m['seq_len']))
y = torch.randint(0, m['vocab_size'], (64, m['out_len']))
for name, args in [('gaussian', ()), ('lowrank', (('rank', 8),)), ('lowrank', (('rank', 2),)), ('gaussian', ())]:
    gram = GRAM(GRAMConfig(**{**m, 'prior': name, 'prior_args': args}))
    step = StepLoss(gram, gram.cfg.alpha)
    times = []
    for i in range(25):
        t0 = time.process_time()
        loss, *_ = step(x, y, None, 0)
        loss.backward()
        times.append(time.process_time() - t0)
    print(f"| {name} | {dict(args).get('rank', '-')} | {statistics.median(times[5:]) * 1e3:.1f} |", flush=True)
