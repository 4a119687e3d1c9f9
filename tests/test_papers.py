"""benchmarks/papers.py pieces that need no benchmark output: TSFLora's ratios, Table II rows."""
from __future__ import annotations

import pytest

papers = pytest.importorskip("benchmarks.papers")


def test_tsflora_68x_needs_29_tokens_at_8_bits():
    rows = {r["tokens on the wire"]: r for r in papers.tsflora_ratios()}
    best = min(rows, key=lambda w: abs(rows[w]["8-bit"] - 6.8))
    assert best == 29 and rows[29]["8-bit"] == pytest.approx(6.86, abs=0.01)
    assert rows[30]["8-bit"] == pytest.approx(6.63, abs=0.01)   # the old "30 of 50 tokens" attribution
    assert rows[40]["8-bit"] == pytest.approx(4.97, abs=0.01)


def test_table2_rows_from_the_memory_model():
    rows = papers.table2()
    items = {r["item"]: r for r in rows}
    tok = items["Table II token activations per batch"]
    assert tok["verdict"] == papers.MATCH and "36.75 MiB" in tok["ours"]
    fed = next(r for k, r in items.items() if k.startswith("Table II client GPU memory, fedlora"))
    assert "5.14 GiB" in fed["ours"]
    assert all(r["why"] for r in rows if r["verdict"] != papers.MATCH)
