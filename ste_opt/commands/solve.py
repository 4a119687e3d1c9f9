"""``ste-opt solve``: solve an instance file and print a readable summary (or JSON)."""
from __future__ import annotations

SOLUTION_SUFFIXES = (".json", ".yaml", ".yml")


def register(sub):
    p = sub.add_parser("solve", help="solve an instance file",
                       description="Solve a scenario file with one method; print a summary (or "
                                   "the solution as JSON with --json) and optionally write the "
                                   "solution (.json/.yaml/.yml, or - for JSON on stdout).")
    p.add_argument("instance", help="scenario file written by `ste-opt generate` (- reads stdin)")
    p.add_argument("--method", default=None, help="solver (see `ste-opt methods`)")
    p.add_argument("--option", dest="options", action="append", metavar="KEY=VALUE",
                   help="solver option (repeatable), e.g. --option token_step=exact")
    p.add_argument("--problem-option", dest="problem_options", action="append", metavar="KEY=VALUE",
                   help="problem option (repeatable), e.g. --problem-option denominator=uplink")
    p.add_argument("--json", action="store_true",
                   help="print the solution and its check report as JSON instead of the summary")
    from ._common import add_output

    add_output(p, help="write the solution here (.json, .yaml, .yml; - writes JSON to stdout "
                       "instead of the summary)")
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
    import logging

    from ..errors import SolverError
    from ..io import save_solution
    from ..solvers import list_methods, solve
    from ._common import (
        UsageError,
        check_output,
        dumps_json,
        load_scenario_arg,
        make_problem,
        parse_options,
        solver_output_to_stderr,
    )

    out = check_output(args.output, suffixes=SOLUTION_SUFFIXES, stdout_ok=True)
    if out == "-" and args.json:
        raise UsageError("--json and -o - both write to stdout: give one")
    scen = load_scenario_arg(args.instance)
    problem = make_problem(scen, **parse_options(args.problem_options))
    options = parse_options(args.options)
    methods = {m.name: m for m in list_methods(problem)}
    method = args.method or {"ste": "alternating", "sflam": "bcd"}.get(problem.kind)
    if method not in methods:
        raise UsageError(f"unknown method {method!r} for the {problem.kind} problem; available: "
                         f"{', '.join(methods)}")
    unknown = sorted(set(options) - set(methods[method].options))
    if unknown:
        raise UsageError(f"method {method!r} has no option(s) {', '.join(unknown)}; its options "
                         f"are: {', '.join(methods[method].options) or '(none)'}")
    logging.getLogger(__name__).debug("solving %s with %s %s", args.instance, method, options)
    with solver_output_to_stderr():
        sol = solve(problem, method, **options)
    report = problem.check(sol)
    if not report.ok:
        raise SolverError(f"solution fails check(): worst violation {report.worst()}")
    if out is not None and out != "-":
        save_solution(sol, out)
    if args.json or out == "-":
        data = sol.to_dict()
        if args.json:
            data = {"solution": data, "check": {"ok": bool(report.ok),
                                                "max_violation": report.max_violation,
                                                "violations": dict(report.violations)}}
        print(dumps_json(data))
        return 0
    print(summary(problem, sol, per_device=not args.quiet))
    if out is not None:
        print(f"\nwrote {out}")
    return 0
