"""Helpers shared by the benchmark scripts: output folder, CSV, Markdown tables, RESULTS.md."""
from __future__ import annotations

import csv
import os
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "results"
ORDER = ["ste_scaling", "ste_solvers", "sflam", "training", "closed_loop", "genfl", "distributed"]


def results_dir() -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR


def write_csv(name: str, rows: Sequence[dict]) -> Path:
    """Write rows (dicts with the same keys) to ``results/<name>.csv``."""
    path = results_dir() / f"{name}.csv"
    if not rows:
        path.write_text("")
        return path
    keys = list(rows[0].keys())
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def _cell(text: str):
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_csv(name: str) -> list[dict]:
    """Rows of ``results/<name>.csv`` as written by :func:`write_csv`, with numbers, booleans and
    empty cells (``None``) decoded; used by the scripts' ``--replot`` (figures from the CSV,
    without re-running the benchmark)."""
    path = results_dir() / f"{name}.csv"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: run the benchmark first")
    with path.open(newline="") as fh:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def integer_axis(axis) -> None:
    """Integer ticks only (rounds, epochs): no 2.5-th round."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def md_table(rows: Sequence[dict], columns: Iterable[str] | None = None, fmt: dict | None = None) -> str:
    """Render rows as a GitHub Markdown table. ``fmt`` maps a column to a format string."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns) if columns is not None else list(rows[0].keys())
    fmt = fmt or {}

    def cell(c, v):
        if v is None or v == "":
            return "–"
        if c in fmt:
            try:
                return format(v, fmt[c])
            except (TypeError, ValueError):
                return str(v)
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(cell(c, r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def machine_line(keep_from: str | None = None) -> str:
    """This machine in one sentence; with ``keep_from``, the sentence already in that section's
    ``results/<keep_from>.md`` if there is one (a section re-rendered from its CSV on another
    machine keeps the machine that measured it)."""
    if keep_from:
        path = RESULTS_DIR / f"{keep_from}.md"
        if path.is_file():
            m = re.search(r"Machine: .*?\.(?=\s|$)", path.read_text())
            if m:
                return m.group(0)
    line = (f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"Python {platform.python_version()}, {platform.system()}")
    torch = sys.modules.get("torch")  # named only where the benchmark itself ran torch
    if torch is not None and torch.cuda.is_available():
        line += f", {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return line + "."


def write_section(name: str, markdown: str) -> Path:
    """Write this benchmark's section of RESULTS.md to ``results/<name>.md``."""
    path = results_dir() / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    write_results()
    return path


def write_results() -> Path:
    """Concatenate every ``results/*.md`` section into ``benchmarks/RESULTS.md``."""
    sections = sorted(RESULTS_DIR.glob("*.md"),
                      key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    head = ("# Benchmark results\n\n"
            "Every number here is written by a script in `benchmarks/` (`make bench` runs them all; "
            "`python -m benchmarks.<name>` runs one). Raw CSV and plots are in `benchmarks/results/`.\n\n")
    body = "\n".join(p.read_text() for p in sections)
    out = ROOT / "RESULTS.md"
    out.write_text(head + body)
    return out
