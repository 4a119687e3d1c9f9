"""Run the fuzz suite (``tests/fuzz``) with its long profile and write its RESULTS.md section.

``python -m benchmarks.fuzz`` runs ``pytest tests/fuzz`` with ``STE_OPT_FUZZ=long`` (hundreds to
thousands of hypothesis examples per test, random seeds unless ``CI`` is set) under a wall-clock
bound, collects the per-category case counts the tests record, and writes the section
``benchmarks/results/fuzz.md``. ``--quick`` runs the short profile that `make test` runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from .common import machine_line, md_table, write_csv, write_section

ROOT = Path(__file__).resolve().parent.parent


def run(long: bool, timeout_s: float) -> dict:
    stats_path = Path(tempfile.mkstemp(prefix="ste_fuzz_stats_", suffix=".json")[1])
    env = dict(os.environ, STE_OPT_FUZZ="long" if long else "short", STE_OPT_FUZZ_STATS=str(stats_path),
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz", "-rf"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        out, rc, timed_out = proc.stdout + proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        out, rc, timed_out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), -1, True
    wall = time.perf_counter() - t0
    stats = json.loads(stats_path.read_text()) if stats_path.stat().st_size else {}
    stats_path.unlink(missing_ok=True)
    tail = [ln for ln in out.strip().splitlines() if ln.strip()][-1:] or [""]
    return {"stats": stats, "rc": rc, "timed_out": timed_out, "wall_s": wall, "summary": tail[0],
            "failed": [ln for ln in out.splitlines() if ln.startswith("FAILED")]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the short profile (as in `make test`)")
    ap.add_argument("--timeout", type=float, default=600.0, help="wall-clock bound (s)")
    args = ap.parse_args(argv)
    res = run(long=not args.quick, timeout_s=args.timeout)
    by_cat: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for key, n in res["stats"].items():
        cat, outcome = key.split("|", 1)
        by_cat[cat][outcome] += n
    rows = []
    for cat in sorted(by_cat):
        o = by_cat[cat]
        ok = sum(v for k, v in o.items() if not k.startswith("refused"))
        refused = sum(v for k, v in o.items() if k.startswith("refused"))
        rows.append({"category": cat, "cases": ok + refused, "solved/loaded/held": ok,
                     "refused (own error)": refused,
                     "refusals": ", ".join(f"{k.partition(':')[2] or k} {v}" for k, v in sorted(o.items())
                                           if k.startswith("refused")) or "-"})
    write_csv("fuzz", rows)
    total = sum(r["cases"] for r in rows)
    profile = "short" if args.quick else "long"
    status = ("timed out" if res["timed_out"] else "passed" if res["rc"] == 0 else "FAILED")
    md = [f"## Fuzz suite ({profile} profile)", "",
          f"`python -m benchmarks.fuzz{' --quick' if args.quick else ''}` "
          f"(`STE_OPT_FUZZ={profile} pytest tests/fuzz`): {total:,} recorded cases in "
          f"{res['wall_s']:.0f} s, {status} ({res['summary']}). {machine_line()}", "",
          "A case is one solver call, one loader call or one bound comparison. Asserted on every case: "
          "no exception other than ste-opt's own, every returned solution passes `check()`, every "
          "proven bound holds against the best objective any method found for the instance. "
          "Failures of this run: " + (", ".join(res["failed"]) if res["failed"] else "none") + ".", "",
          md_table(rows), ""]
    write_section("fuzz", "\n".join(md))
    print("\n".join(md))
    return 0 if res["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
