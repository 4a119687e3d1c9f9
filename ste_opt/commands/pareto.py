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
    p.add_argument("instance", help="scenario file, or 'sflam' for the preset")
    p.add_argument("-o", "--output", default="front.png", help="figure (.png/.pdf/.svg)")
    p.add_argument("--omegas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1",
                   help="comma-separated weights in [0, 1]")
    p.add_argument("--method", default="bcd", help="solver for the front")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help="comma list of baselines to draw ('' for none)")
    p.add_argument("--fixed-bits", type=int, default=8, help="bit-width of the fixed_bits baseline")
    p.add_argument("--per-device-bits", action="store_true", help="each device picks its bit-width")
    p.add_argument("--devices", type=int, default=10, help="active devices (preset only)")
    p.add_argument("--seed", type=int, default=0, help="seed (preset only)")
    p.add_argument("--csv", default=None, help="also write the points as CSV")
    p.set_defaults(func=run)


def _load(args):
    from ..errors import InvalidScenarioError
    from ..io import load_scenario
    from ..scenarios import make_scenario

    path = Path(args.instance)
    if not path.exists() and args.instance == "sflam":
        return make_scenario("sflam", n_devices=args.devices, seed=args.seed)
    scen = load_scenario(path)
    if getattr(scen, "kind", None) != "sflam":
        raise InvalidScenarioError(f"{path}: the Pareto front is defined for SFLAM instances "
                                   f"(kind: sflam), got kind {scen.kind!r}", field="kind")
    return scen


def run(args) -> int:
    import numpy as np

    from ..errors import InvalidScenarioError, SteOptError
    from ..problems.sflam import SFLAMProblem
    from ..solvers.pareto import pareto

    if Path(args.output).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise InvalidScenarioError(f"-o {args.output}: the figure must be .png, .pdf or .svg", field="output")
    try:
        omegas = [float(x) for x in args.omegas.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidScenarioError(f"--omegas must be numbers: {exc}", field="omegas") from exc
    problem = SFLAMProblem(_load(args), per_device_bits=args.per_device_bits)
    series = {args.method: pareto(problem, omegas, method=args.method)}
    for name in [b.strip() for b in args.baselines.split(",") if b.strip()]:
        opts = {"bits": args.fixed_bits} if name == "fixed_bits" else {}
        try:
            series[name if name != "fixed_bits" else f"fixed_bits={args.fixed_bits}"] = pareto(
                problem, omegas, method=name, **opts)
        except SteOptError as exc:
            print(f"ste-opt pareto: baseline {name} skipped: {exc}")
    rows = []
    for name, front in series.items():
        for r in front.to_rows():
            rows.append({"method": name, **r})
    if args.csv:
        import csv
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    best = series[args.method]
    print(f"{args.method}: {len(best)} points, total latency {best.latency_s.min():.4g}–"
          f"{best.latency_s.max():.4g} s, total energy {best.energy_j.min():.4g}–"
          f"{best.energy_j.max():.4g} J; figure: {out}")
    return 0
