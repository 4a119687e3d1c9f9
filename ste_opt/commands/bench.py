"""``ste-opt bench ste``: run the STE solver sweep and print a summary table (optionally CSV)."""
from __future__ import annotations


def _ints(text: str, name: str, minimum: int) -> list[int]:
    from ..validate import usage_error

    try:
        out = [int(x) for x in text.replace(",", " ").split()]
    except ValueError as exc:
        raise usage_error(f"--{name} must be integers separated by commas, got {text!r}") from exc
    if not out or min(out) < minimum:
        raise usage_error(f"--{name} must be integers >= {minimum}, got {text!r}")
    return out


def register(sub):
    p = sub.add_parser("bench", help="benchmark the solvers on preset instances",
                       description="Run every method on every (size, seed) of a preset and report "
                                   "time, STE, bound and gap to the best bound of the instance.")
    p.add_argument("problem", choices=["ste"], help="problem kind")
    p.add_argument("--sizes", default="5,10,100", help="numbers of devices, e.g. 5,10,100,1000")
    p.add_argument("--seeds", default="0,1,2", help="seeds, e.g. 0,1,2")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: global, alternating, alternating_exact, "
                        "milp, scip); also milp_pyomo, brute or any registered name")
    p.add_argument("--preset", default="st-sflora")
    p.add_argument("--cap", dest="caps", action="append", metavar="METHOD=N",
                   help="run METHOD only up to N devices (repeatable), e.g. --cap milp=100")
    p.add_argument("--backend", choices=["serial", "ray"], default="serial",
                   help="run the instances one after another, or fan them out over Ray workers")
    p.add_argument("--ray-address", default=None,
                   help="join an existing Ray cluster (default: a private one on 127.0.0.1)")
    p.add_argument("--workers", type=int, default=None, help="Ray CPUs to use (default: all)")
    p.add_argument("--json", action="store_true",
                   help="print {rows, summary} as JSON instead of the table")
    from ._common import add_output

    add_output(p, help="write the raw rows to this CSV file (.csv; - writes CSV to stdout "
                       "instead of the table)", aliases=("--csv",))
    p.set_defaults(func=run)


def write_csv(rows: list[dict], fh) -> None:
    import csv

    keys = list(rows[0].keys()) if rows else []
    w = csv.DictWriter(fh, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)


def run(args) -> int:
    import contextlib
    import logging
    import sys

    from .. import bench
    from ..errors import SolverError
    from ..progress import progress as progress_bar
    from ..validate import as_int, usage_error
    from ._common import (
        UsageError,
        check_output,
        dumps_json,
        parse_value,
        require_extra,
        solver_output_to_stderr,
        table,
    )

    out = check_output(args.output, suffixes=(".csv",), stdout_ok=True)
    if out == "-" and args.json:
        raise UsageError("--json and -o - both write to stdout: give one")
    methods = tuple(m.strip() for m in args.methods.split(",")) if args.methods else bench.DEFAULT_METHODS
    bench.check_sweep_args(methods, args.preset)
    caps = {}
    for item in args.caps or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise usage_error(f"--cap {item!r} must look like METHOD=N")
        try:
            caps[k.strip()] = as_int(parse_value(v), f"--cap {k.strip()}", lo=1, exc=SolverError)
        except SolverError:
            raise usage_error(f"--cap {item!r}: N must be an integer >= 1") from None
    sizes, seeds = _ints(args.sizes, "sizes", 1), _ints(args.seeds, "seeds", 0)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.backend == "ray":
        require_extra("dist", "--backend ray", modules=("ray",))
    log = logging.getLogger(__name__)
    bar = progress_bar(total=len(sizes) * len(seeds) * len(methods), desc="bench", unit="run")

    def progress(r):
        msg = r["error"] or f"{r['status']:9s} STE {r['objective']:.6g}  {r['time_s']:.3g} s"
        bar.update(1)
        log.info("  M=%-6d seed=%-3d %-18s %s", r["n_devices"], r["seed"], r["method"], msg)

    kw = dict(sizes=sizes, seeds=seeds, methods=methods, preset=args.preset, caps=caps)
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        stack.enter_context(solver_output_to_stderr())
        if args.backend == "ray":
            from ..bench.ray_sweep import sweep_ray

            rows = sweep_ray(num_cpus=args.workers, address=args.ray_address, progress=progress, **kw)
        else:
            rows = bench.sweep(progress=progress, **kw)
    summ = bench.summarize(rows)
    if out is not None and out != "-":
        with open(out, "w", newline="") as fh:
            write_csv(rows, fh)
    if args.json:
        print(dumps_json({"rows": rows, "summary": summ}))
        return 0
    if out == "-":
        write_csv(rows, sys.stdout)
        return 0
    print(table(summ, [("n_devices", "M", "d"), ("method", "method", "s"), ("runs", "runs", "d"),
                       ("time_median_s", "time med (s)", ".3g"), ("ste_median", "STE med", ".6g"),
                       ("gap_to_best_median", "gap med", ".2e"), ("gap_to_best_max", "gap max", ".2e"),
                       ("time_vs_global_median", "x global", ".3g"), ("statuses", "status", "s")]))
    if out is not None:
        print(f"wrote {len(rows)} rows to {out}")
    return 0
