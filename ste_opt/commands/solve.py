"""``ste-opt solve``: solve an instance file and print a readable summary."""
from __future__ import annotations


def register(sub):
    p = sub.add_parser("solve", help="solve an instance file",
                       description="Solve a scenario file with one method; print a summary and "
                                   "optionally write the solution (.json/.yaml).")
    p.add_argument("instance", help="scenario file written by `ste-opt generate`")
    p.add_argument("--method", default=None, help="solver (see `ste-opt methods`)")
    p.add_argument("--option", dest="options", action="append", metavar="KEY=VALUE",
                   help="solver option (repeatable), e.g. --option token_step=exact")
    p.add_argument("--problem-option", dest="problem_options", action="append", metavar="KEY=VALUE",
                   help="problem option (repeatable), e.g. --problem-option denominator=uplink")
    p.add_argument("-o", "--output", default=None, help="write the solution here")
    p.add_argument("--quiet", action="store_true", help="no per-device table")
    p.set_defaults(func=run)


def summary(problem, sol, per_device: bool = True) -> str:
    lines = [f"method      {sol.method}",
             f"status      {sol.status}",
             f"objective   {sol.objective:.6g}" + ("  (STE, retained attention mass per second)"
                                                   if problem.kind == "ste" else "")]
    if sol.bound is not None:
        lines.append(f"bound       {sol.bound:.6g}")
        lines.append(f"gap         {sol.gap:.3e}")
    lines.append(f"time        {sol.time_s * 1e3:.2f} ms")
    lines.append(f"iterations  {sol.iterations}")
    if sol.excluded:
        lines.append(f"excluded    {len(sol.excluded)} device(s): " + ", ".join(map(str, sol.excluded)))
        for d, why in sol.info.get("excluded_reasons", {}).items():
            lines.append(f"  device {d}: {why}")
    if per_device:
        from ._common import table

        n = len(sol.latency)
        rows = []
        for i in range(n):
            row = {"dev": i, "lat": sol.latency[i], "energy": sol.energy[i]}
            if sol.tokens is not None:
                row["tokens"] = int(sol.tokens[i])
            if sol.bandwidth is not None:
                row["bw"] = sol.bandwidth[i] / 1e6
            if sol.power is not None:
                row["power"] = sol.power[i]
            if sol.bits is not None:
                row["bits"] = int(sol.bits[i])
            if sol.assignment is not None:
                row["sub"] = int(sol.assignment[i])
            row["excluded"] = "yes" if i in set(sol.excluded) else ""
            rows.append(row)
        cols = [("dev", "device", "d")]
        if problem.kind == "ste":
            cols += [("tokens", "tokens", "d"), ("bw", "bandwidth_MHz", ".4f")]
        else:
            cols += [("bits", "bits", "d"), ("sub", "subchannel", "d")]
        cols += [("power", "power_W", ".4f"), ("lat", "latency_s", ".4f"),
                 ("energy", "energy_J", ".4f"), ("excluded", "excluded", "s")]
        lines.append("")
        lines.append(table(rows, cols))
    return "\n".join(lines)


def run(args) -> int:
    from ..errors import SolverError
    from ..io import load_scenario, save_solution
    from ..solvers import solve
    from ._common import make_problem, parse_options

    scen = load_scenario(args.instance)
    problem = make_problem(scen, **parse_options(args.problem_options))
    sol = solve(problem, args.method, **parse_options(args.options))
    report = problem.check(sol)
    if not report.ok:
        raise SolverError(f"solution fails check(): worst violation {report.worst()}")
    print(summary(problem, sol, per_device=not args.quiet))
    if args.output:
        save_solution(sol, args.output)
        print(f"\nwrote {args.output}")
    return 0
