"""``ste-opt demo``: the main job on the embedded default.

Generates the paper-preset scenario, solves it with ``alternating`` (and ``global`` with its
certified gap when registered), prints the allocation; then, when the training extra is
installed, runs split federated fine-tuning on digits with the solver schedule and with the
all-tokens fp32 baseline (see :mod:`ste_opt.learning_hooks.demo`).
"""
from __future__ import annotations

from ._common import add_device_options


def register(sub):
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded default",
                       description="Solve the ST-SFLora preset and, with the train extra, run "
                                   "solver-scheduled split federated fine-tuning on digits.")
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    from ._common import add_output

    add_output(p, default="runs/demo", help="output folder (default runs/demo)", aliases=("--out",))
    p.add_argument("--no-train", action="store_true", help="only the optimization part")
    p.add_argument("--rounds", type=int, default=None, help="training rounds (default: demo config)")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from ..io import save_scenario, save_solution
    from ..problems.ste import STEProblem
    from ..scenarios import make_scenario
    from ..solvers import list_methods, solve
    from ._common import UsageError, check_output, missing_modules
    from .solve import summary

    out = check_output(args.output, folder=True)
    if args.devices < 1:
        raise UsageError(f"--devices must be >= 1, got {args.devices}")
    if args.rounds is not None and args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    out.mkdir(parents=True, exist_ok=True)
    scen = make_scenario("st-sflora", n_devices=args.devices, seed=args.seed)
    save_scenario(scen, out / "scenario.yaml")
    problem = STEProblem(scen)
    print(f"== ST-SFLora preset: {scen!r}\n")
    sol = solve(problem, "alternating")
    print(summary(problem, sol))
    save_solution(sol, out / "solution_alternating.json")
    if any(m.name == "global" for m in list_methods(problem)):
        best = solve(problem, "global")
        print(f"\n== global: STE {best.objective:.6g}, bound {best.bound:.6g}, gap {best.gap:.2e}, "
              f"{best.time_s * 1e3:.1f} ms")
        alt_gap = (best.bound - sol.objective) / best.bound
        print(f"   alternating is within {alt_gap:.2%} of the certified optimum")
        save_solution(best, out / "solution_global.json")
    if args.no_train:
        return 0
    missing = missing_modules("train")
    if missing:
        logging.getLogger(__name__).warning(
            "training part skipped: %s not installed; pip install 'ste-opt[train]'",
            ", ".join(missing))
        return 0
    from ..learning_hooks import demo as train_demo

    dev = {k: v for k, v in (("device", args.device), ("amp", args.amp)) if v}
    return int(train_demo.run(out=out, seed=args.seed, rounds=args.rounds, overrides=dev or None,
                              progress=not args.quiet, echo=print) or 0)
