"""Tabulate bench/arc_subset.sh output: python bench/arc_table.py OUT (docs/results.md, "ARC-AGI-1 subset").
"""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
n_rows = json.loads((out / "subset-stats.json").read_text())["split_rows"]
p_rows = json.loads((out / "protocol-stats.json").read_text())["split_rows"] if (out / "protocol-stats.json").exists() else {}


def rows(name):
    return {r["width"]: r for r in json.loads((out / name).read_text())}


def cpu(run):
    recs = [json.loads(l) for l in (out / run / "history.jsonl").read_text().splitlines() if l.strip()]
    train = [r for r in recs if r.get("kind") == "train"]
    return sum(r.get("cpu_seconds", 0.0) for r in train), max(r["batch"] for r in train) + 1


def f(v):
    return "–" if v is None else f"{v:.3f}"


print("| run | batches | training CPU s | split | rows | accuracy N=1 | accuracy N=20 | well-formed N=20 | "
      "solved by one of N=20 | pass@1 / pass@2 N=1 | pass@1 / pass@2 N=20 voted | test outputs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for mode in ("gram", "deterministic"):
    c, b = cpu(f"subset-{mode}")
    for split in ("test", "fit", "train"):
        r = rows(f"subset-{mode}-{split}.json")
        one, twenty = r[1], r[20]
        print(f"| {mode} | {b} | {c:.0f} | {split} | {n_rows[split]} | {f(one['accuracy'])} | {f(twenty['accuracy'])} | "
              f"{f(twenty['well_formed'])} | {f(twenty['distinct_valid'])} | "
              f"{f(one.get('pass@1'))} / {f(one.get('pass@2'))} | {f(twenty.get('pass@1'))} / {f(twenty.get('pass@2'))} | "
              f"{twenty.get('test_outputs', '–')} |")
if (out / "protocol-gram-test.json").exists():
    c, b = cpu("protocol-gram")
    for split in ("test", "train"):
        r = rows(f"protocol-gram-{split}.json")
        print(f"| protocol gram | {b} | {c:.0f} | {split} | {p_rows.get(split, '–')} | {f(r[1]['accuracy'])} | {f(r[20]['accuracy'])} | "
              f"{f(r[20]['well_formed'])} | {f(r[20]['distinct_valid'])} | "
              f"{f(r[1].get('pass@1'))} / {f(r[1].get('pass@2'))} | {f(r[20].get('pass@1'))} / {f(r[20].get('pass@2'))} | "
              f"{r[20].get('test_outputs', '–')} |")
