"""Progress bars for long phases (tqdm.auto: a text bar in a terminal, a widget in notebooks).

:func:`progress` is the one place library code gets a bar from. Bars are off when stderr is not a
terminal (tqdm's own rule), when :func:`set_progress` turned them off (``ste-opt -q``), or when the
environment variable ``STE_OPT_PROGRESS=0``.
"""
from __future__ import annotations

import os

__all__ = ["progress", "set_progress", "progress_enabled"]

_enabled: bool | None = None   # None: tqdm decides (off when not a terminal)


def set_progress(enabled: bool | None) -> None:
    """``True``: always draw bars; ``False``: never; ``None``: only on a terminal (default)."""
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool | None:
    env = os.environ.get("STE_OPT_PROGRESS")
    if env is not None and env.strip().lower() in ("0", "false", "no", "off"):
        return False
    return _enabled


def progress(iterable=None, *, enabled: bool | None = None, **kwargs):
    """A ``tqdm.auto.tqdm`` bar over ``iterable`` (or a manual one with ``total=``).

    ``enabled=False`` forces it off (e.g. a caller's ``progress=False`` argument); ``True`` or
    ``None`` leave it to the module setting and tqdm's terminal check.
    """
    from tqdm.auto import tqdm

    state = progress_enabled()
    if enabled is False or state is False:
        disable = True
    elif state is True:
        disable = False
    else:
        disable = None
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=disable, **kwargs)
