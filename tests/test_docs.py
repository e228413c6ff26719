"""Every code block of README.md and docs/*.md marked runnable runs as written (issue 15, item 6).

A block is marked by an HTML comment on the line before its opening fence::

    <!-- runnable -->
    <!-- runnable: train_cfg.batches => 2; inputs[:200] => inputs[:8] -->

The optional list shrinks the block for the test (each ``old => new`` must occur in the block, so the doc
and the test cannot drift apart silently).  Blocks run in a fresh namespace, in a temporary working folder
with their own dataset cache, one torch thread.
"""

import re
from pathlib import Path

import pyro
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"<!-- runnable(?::\s*(?P<subs>.*?))?\s*-->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S)


def runnable_blocks():
    out = []
    for path in DOCS:
        for i, m in enumerate(MARK.finditer(path.read_text(encoding="utf-8"))):
            subs = [tuple(s.split("=>", 1)) for s in (m["subs"] or "").split(";") if s.strip()]
            out.append(pytest.param(m["lang"], m["code"], [(a.strip(), b.strip()) for a, b in subs],
                                    id=f"{path.relative_to(ROOT)}#{i}"))
    return out


def test_the_readme_and_the_docs_have_runnable_blocks():
    ids = [p.id for p in runnable_blocks()]
    assert any(i.startswith("README.md#") for i in ids)
    assert {"docs/usage.md#0", "docs/analysis.md#0", "docs/custom_priors.md#0"} <= set(ids)


@pytest.mark.parametrize("lang,code,subs", runnable_blocks())
def test_runnable_block(lang, code, subs, tmp_path, monkeypatch):
    assert lang == "python", "only python blocks are marked runnable"
    for old, new in subs:
        assert old in code, f"substitution {old!r} does not occur in the block"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(ROOT))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pyro.clear_param_store()
    try:
        exec(compile(code, "<doc block>", "exec"), {"__name__": "__doc_block__"})
    finally:
        torch.set_num_threads(threads)
