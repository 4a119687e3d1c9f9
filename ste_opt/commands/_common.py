"""Helpers shared by CLI commands: problem construction and readable tables."""
from __future__ import annotations

import numpy as np


def parse_value(text: str):
    """Parse a CLI ``key=value`` value with YAML rules (numbers, booleans, lists)."""
    from ..errors import SteOptError
    from ..validate import parse_cli_value

    try:
        return parse_cli_value(text, "option value")
    except SteOptError:
        return text


def parse_options(pairs: list[str] | None) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``."""
    from ..validate import usage_error

    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise usage_error(f"option {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


def make_problem(scenario, **options):
    """The problem matching the scenario's kind, with problem options (checked by name/type)."""
    from ..problems.factory import build_problem

    return build_problem(scenario, **options)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Fixed-width text table: columns are (key, header, format)."""
    head = [h for _, h, _ in columns]
    cells = []
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            line.append("-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt))
        cells.append(line)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(out)


def add_device_options(parser, amp: bool = True) -> None:
    """``--device`` (and ``--amp``) of the training commands (config keys ``device``, ``amp``)."""
    parser.add_argument("--device", default=None, metavar="DEV",
                        help="auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:<i> | mps "
                             "(default: the config's device, auto)")
    if amp:
        parser.add_argument("--amp", default=None, choices=["off", "bf16", "fp16"],
                            help="mixed precision (default: the config's amp, off)")


def training_config(args, extra: list[str]) -> dict:
    """Resolved training config of ``train``/``pretrain``: the ``--config`` file with ``--set``
    overrides then ``extra`` ones (and ``--device``/``--amp``); sets torch's thread count when
    ``--threads`` is given."""
    from ..learning_hooks.config import load_config

    extra = list(extra)
    if getattr(args, "device", None):
        extra.append(f"device={args.device}")
    if getattr(args, "amp", None):
        extra.append(f"amp={args.amp}")
    cfg = load_config(args.config, list(args.overrides) + extra)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return cfg
