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
    p.add_argument("-o", "--output", default=None, help="write the raw rows to this CSV file")
    p.set_defaults(func=run)


def run(args) -> int:
    import csv

    from .. import bench
    from ..errors import SolverError
    from ..validate import as_int, usage_error
    from ._common import parse_value, table

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

    def progress(r):
        msg = r["error"] or f"{r['status']:9s} STE {r['objective']:.6g}  {r['time_s']:.3g} s"
        print(f"  M={r['n_devices']:<6d} seed={r['seed']:<3d} {r['method']:18s} {msg}", flush=True)

    kw = dict(sizes=_ints(args.sizes, "sizes", 1), seeds=_ints(args.seeds, "seeds", 0), methods=methods,
              preset=args.preset, caps=caps)
    if args.backend == "ray":
        from ..bench.ray_sweep import sweep_ray

        rows = sweep_ray(num_cpus=args.workers, address=args.ray_address, progress=progress, **kw)
    else:
        rows = bench.sweep(progress=progress, **kw)
    summ = bench.summarize(rows)
    print(table(summ, [("n_devices", "M", "d"), ("method", "method", "s"), ("runs", "runs", "d"),
                       ("time_median_s", "time med (s)", ".3g"), ("ste_median", "STE med", ".6g"),
                       ("gap_to_best_median", "gap med", ".2e"), ("gap_to_best_max", "gap max", ".2e"),
                       ("time_vs_global_median", "x global", ".3g"), ("statuses", "status", "s")]))
    if args.output:
        keys = list(rows[0].keys()) if rows else []
        with open(args.output, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.output}")
    return 0
