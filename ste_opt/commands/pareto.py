"""``ste-opt pareto``: the SFLAM latency–energy Pareto front, with the baselines on it."""
from __future__ import annotations

import argparse
from pathlib import Path

BASELINES = ("random_matching", "max_power", "fixed_bits")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pareto", help="SFLAM: sweep the latency weight omega and plot total latency vs energy",
        description=("Solve an SFLAM instance for a sweep of omega (same T_ref and E_ref) and plot "
                     "total latency against total energy to reach the target, for the chosen method "
                     "and the baselines. INSTANCE is a scenario file (.yaml/.json, kind: sflam) or "
                     "the preset name 'sflam'."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("instance", help="scenario file, 'sflam' for the preset, or - to read stdin")
    from ._common import add_output

    add_output(p, help="figure (.png, .pdf, .svg) or the points as a table (.csv, .json; - "
                       "writes CSV to stdout); default front.png, or nothing with --json")
    p.add_argument("--omegas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1",
                   help="comma-separated weights in [0, 1]")
    p.add_argument("--method", default="bcd", help="solver for the front")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help="comma list of baselines to draw ('' for none)")
    p.add_argument("--fixed-bits", type=int, default=8, help="bit-width of the fixed_bits baseline")
    p.add_argument("--per-device-bits", action="store_true", help="each device picks its bit-width")
    p.add_argument("--devices", type=int, default=10, help="active devices (preset only)")
    p.add_argument("--seed", type=int, default=0, help="seed (preset only)")
    p.add_argument("--csv", default=None, help=argparse.SUPPRESS)  # deprecated: -o points.csv
    p.add_argument("--json", action="store_true", help="print the points as JSON (no figure "
                                                       "unless -o names one)")
    p.set_defaults(func=run)

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
TABLE_SUFFIXES = (".csv", ".json")


def _load(args):
    from ..errors import InvalidScenarioError
    from ..scenarios import make_scenario
    from ._common import load_scenario_arg

    path = Path(args.instance)
    if not path.exists() and args.instance == "sflam":
        return make_scenario("sflam", n_devices=args.devices, seed=args.seed)
    scen = load_scenario_arg(args.instance)
    if getattr(scen, "kind", None) != "sflam":
        raise InvalidScenarioError(f"{path}: the Pareto front is defined for SFLAM instances "
                                   f"(kind: sflam), got kind {scen.kind!r}", field="kind")
    return scen


def _write_rows(rows: list[dict], out) -> None:
    import csv
    import sys

    from ._common import dumps_json

    if out == "-":
        fh = sys.stdout
    elif Path(out).suffix.lower() == ".json":
        Path(out).write_text(dumps_json(rows) + "\n")
        return
    else:
        fh = open(out, "w", newline="")  # noqa: SIM115 - closed below
    try:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    finally:
        if fh is not sys.stdout:
            fh.close()


def run(args) -> int:
    import logging

    from ..errors import SteOptError
    from ..problems.sflam import SFLAMProblem
    from ..solvers.pareto import pareto
    from ._common import UsageError, check_output, dumps_json, solver_output_to_stderr

    log = logging.getLogger(__name__)
    output = args.output if args.output is not None or args.json else "front.png"
    out = check_output(output, suffixes=FIGURE_SUFFIXES + TABLE_SUFFIXES, stdout_ok=True)
    csv_out = check_output(args.csv, suffixes=(".csv",), option="--csv")
    if args.csv:
        log.warning("--csv is deprecated; use -o/--output points.csv")
    if out == "-" and args.json:
        raise UsageError("--json and -o - both write to stdout: give one")
    try:
        omegas = [float(x) for x in args.omegas.split(",") if x.strip()]
    except ValueError as exc:
        raise UsageError(f"--omegas must be numbers separated by commas: {exc}") from exc
    if not omegas or not all(0.0 <= w <= 1.0 for w in omegas):
        raise UsageError(f"--omegas must be weights in [0, 1], got {args.omegas!r}")
    problem = SFLAMProblem(_load(args), per_device_bits=args.per_device_bits)
    with solver_output_to_stderr():
        series = {args.method: pareto(problem, omegas, method=args.method)}
        for name in [b.strip() for b in args.baselines.split(",") if b.strip()]:
            opts = {"bits": args.fixed_bits} if name == "fixed_bits" else {}
            try:
                series[name if name != "fixed_bits" else f"fixed_bits={args.fixed_bits}"] = pareto(
                    problem, omegas, method=name, **opts)
            except SteOptError as exc:
                log.warning("baseline %s skipped: %s", name, exc)
    rows = []
    for name, front in series.items():
        for r in front.to_rows():
            rows.append({"method": name, **r})
    if csv_out is not None:
        _write_rows(rows, csv_out)
    figure = out if out not in (None, "-") and out.suffix.lower() in FIGURE_SUFFIXES else None
    if out == "-" or (out is not None and out.suffix.lower() in TABLE_SUFFIXES):
        _write_rows(rows, out)
        if out == "-":
            return 0
    if figure is not None:
        _plot(problem, series, figure)
    if args.json:
        print(dumps_json(rows))
        return 0
    best = series[args.method]
    print(f"{args.method}: {len(best)} points, total latency {best.latency_s.min():.4g}–"
          f"{best.latency_s.max():.4g} s, total energy {best.energy_j.min():.4g}–"
          f"{best.energy_j.max():.4g} J; {'figure' if figure is not None else 'points'}: {out}")
    return 0


def _plot(problem, series: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, front) in enumerate(series.items()):
        order = np.argsort(front.latency_s)
        ax.plot(front.latency_s[order] / 3600, front.energy_j[order] / 1e3,
                marker="o" if i == 0 else "s^vd"[i % 4], lw=2 if i == 0 else 1,
                label=name, alpha=1 if i == 0 else 0.8)
    ax.set_xlabel("total latency to target (h)")
    ax.set_ylabel("total device energy to target (kJ)")
    s = problem.scenario
    ax.set_title(f"SFLAM Pareto front: N={s.n_devices}, K={s.n_subchannels}, omega sweep")
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
