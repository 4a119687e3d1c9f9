"""Helpers shared by CLI commands: problem construction, readable tables, the ``-o/--output``
option (validated before any work starts), ``-`` for stdin/stdout, ``--json`` output, optional
extras."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import SteOptError

STDIO = "-"


class UsageError(SteOptError, ValueError):
    """A command-line argument is unusable (the CLI prints one line and exits 2)."""


# ---------------------------------------------------------------------------------------------
# -o/--output and deprecated aliases


class _DeprecatedAlias(argparse.Action):
    """A hidden old option name: stores into the new option's ``dest`` and leaves a note that the
    CLI logs as a warning once logging is set up."""

    def __init__(self, option_strings, dest, new_name: str = "-o/--output", **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        notes = list(getattr(namespace, "deprecated_options", []) or [])
        notes.append(f"{option_string} is deprecated; use {self.new_name}")
        namespace.deprecated_options = notes


def add_output(parser, *, help: str, default=None, required: bool = False,
               aliases: Iterable[str] = (), metavar: str = "PATH") -> None:
    """Add ``-o/--output`` (dest ``output``) and hidden deprecated ``aliases`` (e.g. ``--out``)."""
    parser.add_argument("-o", "--output", default=default, required=required, metavar=metavar,
                        help=help)
    for alias in aliases:
        parser.add_argument(alias, dest="output", action=_DeprecatedAlias, help=argparse.SUPPRESS)


def check_output(path, *, suffixes: Iterable[str] | None = None, folder: bool = False,
                 stdout_ok: bool = False, option: str = "-o/--output"):
    """Validate an output path before any work starts; returns ``"-"``, a ``Path`` or ``None``.

    A file output needs an allowed suffix and an existing parent folder; a folder output must not
    be an existing file and is created later (with its parents) by the command.
    """
    if path is None:
        return None
    if str(path) == STDIO:
        if not stdout_ok:
            raise UsageError(f"{option} cannot be '-' here (standard output): give a path")
        return STDIO
    p = Path(path).expanduser()
    if folder:
        if p.exists() and not p.is_dir():
            raise UsageError(f"{option} {path}: exists and is not a folder")
        anc = p
        while not anc.exists():
            anc = anc.parent
        if not anc.is_dir():
            raise UsageError(f"{option} {path}: {anc} is not a folder")
        if not os.access(anc, os.W_OK):
            raise UsageError(f"{option} {path}: folder {anc} is not writable")
        return p
    allowed = tuple(s.lower() for s in (suffixes or ()))
    if allowed and p.suffix.lower() not in allowed:
        raise UsageError(f"{option} {path}: unsupported file type {p.suffix or '(none)'!r}; "
                         f"use {', '.join(allowed)}" + (" or - for standard output" if stdout_ok else ""))
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a folder, expected a file")
    parent = p.parent
    if not parent.exists():
        raise UsageError(f"{option} {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path}: folder {parent} is not writable")
    return p


# ---------------------------------------------------------------------------------------------
# stdin / stdout and JSON


def read_mapping(path, what: str = "input") -> dict:
    """A YAML/JSON mapping from standard input (``-``; YAML ⊃ JSON), with the same limits as a
    file (size, alias expansion: :mod:`ste_opt.validate`)."""
    from ..errors import InvalidScenarioError
    from ..validate import get_limit, load_yaml_text

    if str(path) != STDIO:
        raise ValueError("read_mapping reads standard input only; files go through ste_opt.io")
    limit = get_limit("max_file_bytes")
    text = sys.stdin.read(limit + 1)
    if len(text) > limit:
        raise InvalidScenarioError(f"standard input: more than {limit:,} characters (set "
                                   f"STE_OPT_MAX_FILE_BYTES to allow more)", field="path")
    data = load_yaml_text(text, "standard input")
    if not isinstance(data, dict):
        raise InvalidScenarioError(f"standard input must hold a {what} mapping at top level",
                                   field="path")
    return data


def load_scenario_arg(path):
    """A scenario from a file (``.yaml``, ``.yml``, ``.json``) or from stdin (``-``)."""
    from ..errors import InvalidScenarioError
    from ..io import load_scenario, scenario_classes

    if str(path) != STDIO:
        return load_scenario(path)
    data = read_mapping(path, "scenario")
    kind = data.get("kind", "ste")
    classes = scenario_classes()
    if kind not in classes:
        raise InvalidScenarioError(f"standard input: unknown scenario kind {kind!r}; known: "
                                   f"{sorted(classes)}", field="kind")
    return classes[kind].from_dict(data)


def jsonable(obj):
    """``obj`` with numpy types turned into Python ones and NaN/inf into ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_json(obj) -> str:
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)


@contextlib.contextmanager
def solver_output_to_stderr():
    """While solving, whatever a compiled solver writes to standard output (the HiGHS banner of
    ``highspy.Highs()``, SCIP messages) is dropped, or sent to standard error with ``-v``
    (the ``ste_opt.solvers`` loggers at DEBUG), so that standard output holds only the command's
    own output (a summary, JSON, CSV)."""
    import logging

    try:
        fd = sys.stdout.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured streams (tests): nothing to redirect
        yield
        return
    verbose = logging.getLogger("ste_opt.solvers").isEnabledFor(logging.DEBUG)
    sys.stdout.flush()
    _flush_c_stdio()
    saved = os.dup(fd)
    target = err_fd if verbose else os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(target, fd)
        yield
    finally:
        _flush_c_stdio()
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
        if target != err_fd:
            os.close(target)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no C library to flush
        pass


# ---------------------------------------------------------------------------------------------
# optional extras

EXTRA_MODULES = {"train": ("torch", "timm", "peft", "sklearn"), "dist": ("ray", "flwr"),
                 "ref": ("pyscipopt",)}


def missing_modules(extra: str, modules: Iterable[str] | None = None) -> list[str]:
    """The modules of ``extra`` that are not installed.

    torch, sklearn, ray, flwr and pyscipopt are imported (the sure test; the commands import them
    next anyway); timm and peft are only looked up, since importing them needs the torchvision
    guard of ``ste_opt.learning_hooks``.
    """
    import importlib.util

    out = []
    for name in modules or EXTRA_MODULES[extra]:
        try:
            if name in ("timm", "peft"):
                if importlib.util.find_spec(name) is None:
                    out.append(name)
            else:
                importlib.import_module(name)
        except ImportError:
            out.append(name)
    return out


class MissingExtraError(ModuleNotFoundError):
    """An optional extra is not installed; the message names it and the pip command."""

    def __init__(self, message: str, *, name: str, extra: str):
        super().__init__(message, name=name)
        self.extra = extra


def require_extra(extra: str, what: str, modules: Iterable[str] | None = None) -> None:
    """Raise ``ModuleNotFoundError`` (the CLI turns it into one line, exit 1) when ``extra`` (or
    just its ``modules``) is missing."""
    missing = missing_modules(extra, modules)
    if missing:
        raise MissingExtraError(f"{what} needs {', '.join(missing)}, not installed: pip install "
                                f"'ste-opt[{extra}]'", name=missing[0], extra=extra)


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
    source = read_mapping(STDIO, "training config") if args.config == STDIO else args.config
    cfg = load_config(source, list(args.overrides) + extra)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return cfg
