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
    p.add_argument("--format", choices=["yaml", "json"], default=None,
                   help="format written by -o - (default yaml); a file takes its suffix")
    from ._common import add_output

    add_output(p, required=True, help="output file (.yaml, .yml or .json; - writes to stdout)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import sys

    import yaml

    from ..io import save_scenario
    from ..scenarios import make_scenario
    from ._common import check_output, parse_options

    out = check_output(args.output, suffixes=(".yaml", ".yml", ".json"), stdout_ok=True)

    kw = parse_options(args.overrides)
    for k, v in list(kw.items()):
        if isinstance(v, list):
            kw[k] = tuple(v)
    if args.bandwidth_hz is not None:
        kw["bandwidth_hz"] = args.bandwidth_hz
    from ..validate import limits

    with limits(max_elements=args.max_elements):
        scen = make_scenario(args.preset, n_devices=args.devices, seed=args.seed, **kw)
    if out == "-":
        data = scen.to_dict()
        if args.format == "json":
            json.dump(data, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:  # streamed: a reader that stops early (| head) is noticed while writing
            yaml.safe_dump(data, sys.stdout, sort_keys=False, default_flow_style=None, width=120)
        return 0
    path = save_scenario(scen, out)
    print(f"wrote {path}: {scen!r}")
    return 0
