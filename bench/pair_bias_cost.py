"""Seconds per training supervision step (forward + backward, batch 64), vertex-coloring-8, preset cpu, with
the attention mixer with and without the pair bias, GRAM and deterministic; interleaved repeats, medians (issue 16)."""
import statistics, time
import torch
import gram_tasks as tasks
from gram_cli import api
from gram_pyro.runconfig import build_run_config
from gram_pyro.model import GRAM
from gram_pyro.update import StepLoss

torch.set_num_threads(1)
task = tasks.get_task("vertex-coloring-8")
train = api.load_splits(task, 0)["train"]
x, y = torch.as_tensor(train.x[:64]), torch.as_tensor(train.y[:64])
variants = {}
for mode in ("gram", "deterministic"):
    for bias in (False, True):
        sets = ["model.mixer=attention"] + (["model.pair_bias=true"] if bias else [])
        cfg = api.with_pair_structure(build_run_config("vertex-coloring-8", api.task_sizes(task), "cpu", sets, mode), task)
        torch.manual_seed(0)
        gram = GRAM(cfg.model)
        variants[(mode, bias)] = (gram, StepLoss(gram, cfg.model.alpha))
times = {k: [] for k in variants}
for rep in range(12):
    for k, (gram, loss_fn) in variants.items():
        t0 = time.perf_counter()
        out = loss_fn(x, y, None, 0)
        loss = out[0] if isinstance(out, tuple) else out.loss if hasattr(out, "loss") else out
        loss.backward()
        gram.zero_grad(set_to_none=True)
        if rep >= 2:
            times[k].append(time.perf_counter() - t0)
print("| mode | pair_bias | median s/step | ratio bias/no bias |")
print("|---|---|---|---|")
for (mode, bias), ts in times.items():
    med = statistics.median(ts)
    base = statistics.median(times[(mode, False)])
    print(f"| {mode} | {bias} | {med:.4f} | {med / base:.2f} |")
