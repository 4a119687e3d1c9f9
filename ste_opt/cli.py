"""The ``ste-opt`` command line.

Sub-commands live in :mod:`ste_opt.commands`, one module each; every module defines
``register(subparsers)`` which adds its parser and sets ``func`` (``args -> int``). Modules are
discovered, so adding a command is adding a file. Errors of ste-opt print one line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__
from .errors import InfeasibleError, SolverError, SteOptError


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _is_input_error(exc: SolverError) -> bool:
    """A SolverError about the input (unknown method or option, bad option value; marked
    ``usage`` by :mod:`ste_opt.validate`) is a usage error (exit 2); a solver that failed is 1."""
    return bool(getattr(exc, "usage", False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ste-opt",
        description="Resource allocation for split federated fine-tuning at the wireless edge.")
    parser.add_argument("--version", action="version", version=f"ste-opt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import commands
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except InfeasibleError as exc:
        print(f"ste-opt {args.command}: infeasible: {_one_line(exc)}", file=sys.stderr)
        return 3
    except SolverError as exc:
        print(f"ste-opt {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2 if _is_input_error(exc) else 1
    except SteOptError as exc:
        print(f"ste-opt {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"ste-opt {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:   # full disk, I/O error: a runtime failure, one line
        print(f"ste-opt {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"ste-opt {args.command}: error: out of memory (reduce the instance size)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ste-opt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
