"""``ste-opt methods``: list the registered solvers."""
from __future__ import annotations


def register(sub):
    p = sub.add_parser("methods", help="list the solver methods",
                       description="List the registered methods for each problem kind.")
    p.add_argument("--problem", choices=["ste", "sflam"], default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..solvers import list_methods

    for m in list_methods(args.problem):
        opts = ", ".join(m.options) or "-"
        print(f"{m.kind:6s} {m.name:18s} [{m.bound:5s}] {m.summary}\n{'':26s} options: {opts}")
    return 0
