"""Keep compiled solvers' console output off the user's standard output.

``highspy.Highs()`` prints its banner from C++ in the constructor, before any option can turn it
off; :func:`c_stdout_silenced` drops what C code writes to file descriptor 1 meanwhile. The
solvers' logs proper go through :mod:`logging` (DEBUG on the ``ste_opt.solvers`` loggers).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["c_stdout_silenced"]


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no C library to flush
        pass


@contextlib.contextmanager
def c_stdout_silenced() -> Iterator[None]:
    """Within the block, whatever is written to file descriptor 1 (C ``printf``) is discarded.

    Python's own ``sys.stdout`` is flushed before and after; a no-op when there is no real file
    descriptor 1 (some embedded interpreters).
    """
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    _flush_c_stdio()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
