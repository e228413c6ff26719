"""Shared pieces of the benchmark scripts: appending a table to docs/results.md with its command."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def markdown_table(rows: list[dict], keys: list[str]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def append_results(title: str, table: str, note: str = "") -> None:
    """Append a section to docs/results.md: title, exact command, machine, date, then the table."""
    cmd = "python " + " ".join(sys.argv)
    head = (f"\n## {title}\n\n`{cmd}` — {platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}, {datetime.date.today()}\n\n")
    with open(ROOT / "docs" / "results.md", "a") as f:
        f.write(head + (note + "\n\n" if note else "") + table + "\n")
