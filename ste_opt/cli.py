"""The ``ste-opt`` command line.

Sub-commands live in :mod:`ste_opt.commands`, one module each; every module defines
``register(subparsers)`` which adds its parser and sets ``func`` (``args -> int``). Modules are
discovered, so adding a command is adding a file. Every sub-command also accepts ``-q/--quiet``
and ``-v/--verbose`` (stdlib :mod:`logging` levels, see :func:`configure_logging`).

Exit status (documented in ``docs/cli.md``):

===  ==================================================================================
0    success
1    failure while running (solver error, runtime failure, a missing optional extra)
2    usage or input error (bad option, bad file, bad config); one line on stderr
3    the instance is infeasible (:class:`~ste_opt.errors.InfeasibleError`)
130  interrupted (Ctrl-C)
141  stdout was closed early (``ste-opt ... | head -1``); nothing is printed
===  ==================================================================================
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from . import __version__
from .errors import InfeasibleError, SolverError, SteOptError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INFEASIBLE = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141

# top-level module -> the extra that installs it
EXTRAS = {
    "torch": "train", "timm": "train", "peft": "train", "sklearn": "train",
    "safetensors": "train", "torchvision": "train", "transformers": "train",
    "ray": "dist", "flwr": "dist", "pyscipopt": "ref",
}

log = logging.getLogger("ste_opt")


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (so redirections and test capture see it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property ignores it
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            msg += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"[{record.name}] {msg}"
        return msg


def configure_logging(verbosity: int = 0) -> None:
    """Route the ``ste_opt`` loggers to stderr at a level set by ``-q``/``-v``.

    ``verbosity`` = (number of ``-v``) − (number of ``-q``):

    * ≤ −1: warnings and errors only, no progress bars;
    * 0 (default): ste-opt's progress messages (INFO), solver logs off;
    * 1: also DEBUG messages, including the solvers' own logs (HiGHS, SCIP), which ste-opt
      emits at DEBUG on loggers under ``ste_opt.solvers``;
    * ≥ 2: also third-party libraries' DEBUG messages (root logger).
    """
    from .progress import set_progress

    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    for h in list(log.handlers):
        if isinstance(h, _StderrHandler):
            log.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    logging.captureWarnings(True)
    if verbosity >= 2:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    set_progress(False if verbosity < 0 else None)


class _SubParsers:
    """Wraps argparse's sub-parser action so every command gets ``-q``/``-v`` (and a formatter)."""

    def __init__(self, action, common: argparse.ArgumentParser):
        self._action = action
        self._common = common

    def add_parser(self, name, **kwargs):
        kwargs["parents"] = [*kwargs.get("parents", []), self._common]
        return self._action.add_parser(name, **kwargs)

    def __getattr__(self, item):
        return getattr(self._action, item)


def _verbosity_args(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="less output: warnings and errors only, no progress bars")
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more output: -v adds debug messages and the solvers' logs, "
                             "-vv third-party libraries' too")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ste-opt",
        description="Resource allocation for split federated fine-tuning at the wireless edge.",
        epilog="exit status: 0 ok, 1 failure, 2 usage or input error, 3 infeasible instance, "
               "130 interrupted, 141 output pipe closed")
    parser.add_argument("--version", action="version", version=f"ste-opt {__version__}")
    _verbosity_args(parser, 0)
    common = argparse.ArgumentParser(add_help=False)
    _verbosity_args(common, argparse.SUPPRESS)
    sub = _SubParsers(parser.add_subparsers(dest="command", metavar="COMMAND"), common)
    from . import commands
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for an optional dependency that is not installed, else ``None``."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return (f"this needs {top}, which is not installed; install the '{extra}' extra: "
            f"pip install 'ste-opt[{extra}]'")


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _error(command: str, message: str) -> None:
    text = " ".join(str(message).split()) or "error"
    print(f"ste-opt {command}: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2, one line from argparse)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    saved = (list(log.handlers), log.level, log.propagate)
    configure_logging(int(args.verbose or 0) - int(args.quiet or 0))
    try:
        for note in getattr(args, "deprecated_options", ()):
            log.warning(note)
        return _run(args)
    finally:  # in-process callers (tests, notebooks) get their logging back
        from .progress import set_progress

        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
        set_progress(None)


def _run(args: argparse.Namespace) -> int:
    command = args.command
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's final flush
        return rc
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"ste-opt {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InfeasibleError as exc:
        _error(command, f"infeasible: {exc}")
        return EXIT_INFEASIBLE
    except SteOptError as exc:
        # a SolverError is a failure while running (1) unless the validation layer marked it
        # ``usage`` (unknown method or option, bad option value); every other ste-opt error is
        # about the input (InvalidScenarioError, ConfigError, the commands' UsageError): 2
        _error(command, exc)
        usage = not isinstance(exc, SolverError) or bool(getattr(exc, "usage", False))
        return EXIT_USAGE if usage else EXIT_FAILURE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        _error(command, exc)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        # a command's own check (commands' MissingExtraError, with ``extra`` set) says it all
        msg = str(exc) if getattr(exc, "extra", None) else missing_extra(exc)
        if msg is None:
            raise
        _error(command, msg)
        return EXIT_FAILURE
    except OSError as exc:  # full disk, I/O error: a runtime failure, one line
        _error(command, exc)
        return EXIT_FAILURE
    except MemoryError:
        _error(command, "out of memory (reduce the instance size)")
        return EXIT_FAILURE

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
