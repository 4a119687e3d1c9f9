"""``ste-opt generate``: write a scenario instance from a preset."""
from __future__ import annotations


def register(sub):
    p = sub.add_parser("generate", help="generate a scenario instance from a preset",
                       description="Generate a scenario from a preset and write it as YAML or JSON.")
    p.add_argument("--preset", default="st-sflora", help="preset name (st-sflora, sflam)")
    p.add_argument("--devices", type=int, default=10, help="devices active in the round")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--bandwidth-hz", type=float, default=None, help="total bandwidth (default: preset rule)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a preset option (repeatable), e.g. --set energy_max_j=0.5")
    p.add_argument("--max-elements", type=int, default=None,
                   help="refuse instances with more devices x patches (or subchannels) than this "
                        "(default: STE_OPT_MAX_ELEMENTS or 5,000,000)")
    p.add_argument("-o", "--output", required=True, help="output file (.yaml, .yml or .json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io import save_scenario
    from ..scenarios import make_scenario
    from ._common import parse_options

    kw = parse_options(args.overrides)
    for k, v in list(kw.items()):
        if isinstance(v, list):
            kw[k] = tuple(v)
    if args.bandwidth_hz is not None:
        kw["bandwidth_hz"] = args.bandwidth_hz
    from ..validate import limits

    with limits(max_elements=args.max_elements):
        scen = make_scenario(args.preset, n_devices=args.devices, seed=args.seed, **kw)
    path = save_scenario(scen, args.output)
    print(f"wrote {path}: {scen!r}")
    return 0
