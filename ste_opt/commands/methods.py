"""``ste-opt methods``: list the registered solvers."""
from __future__ import annotations


def register(sub):
    p = sub.add_parser("methods", help="list the solver methods",
                       description="List the registered methods for each problem kind.")
    p.add_argument("--problem", choices=["ste", "sflam"], default=None)
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {kind, name, bound, summary, options}")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..solvers import list_methods
    from ._common import dumps_json

    methods = list_methods(args.problem)
    if args.json:
        print(dumps_json([{"kind": m.kind, "name": m.name, "bound": m.bound, "summary": m.summary,
                           "options": list(m.options)} for m in methods]))
        return 0
    for m in methods:
        opts = ", ".join(m.options) or "-"
        print(f"{m.kind:6s} {m.name:18s} [{m.bound:5s}] {m.summary}\n{'':26s} options: {opts}")
    return 0
