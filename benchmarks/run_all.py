"""Run every benchmark script in this folder, then rebuild RESULTS.md.

Each benchmark module ``benchmarks/<name>.py`` defines ``main(argv=None)``; it writes CSV and PNG
under ``benchmarks/results/`` and a Markdown section ``benchmarks/results/<name>.md``.
``RESULTS.md`` is the concatenation of those sections (see :func:`benchmarks.common.write_results`).
Usage: ``python -m benchmarks.run_all [name ...]``.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks
from benchmarks.common import write_results

SKIP = {"run_all", "common"}
LAST = {"papers"}


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:])
    if not names:
        names = sorted((i.name for i in pkgutil.iter_modules(benchmarks.__path__)
                        if i.name not in SKIP and not i.name.startswith("_")),
                       key=lambda n: (n in LAST, n))   # the reproduction report reads the others' CSVs
    for name in names:
        t0 = time.perf_counter()
        print(f"== benchmark {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main([])
        print(f"== {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    write_results()
    return 0


if __name__ == "__main__":
    sys.exit(main())
