"""Where ste-opt keeps downloaded-once or computed-once files (pretrained backbones, generators).

The folder is, first match wins:

1. the ``cache_dir`` argument (e.g. the training config key ``output.cache_dir``),
2. the environment variable ``STE_OPT_CACHE_DIR``,
3. the user's cache directory from :mod:`platformdirs` (``~/.cache/ste-opt`` on Linux,
   ``~/Library/Caches/ste-opt`` on macOS, ``%LOCALAPPDATA%\\ste-opt\\Cache`` on Windows); without
   platformdirs, ``$XDG_CACHE_HOME/ste-opt`` or ``~/.cache/ste-opt``.

Nothing is created until a file is written there.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "cache_dir"]

ENV_VAR = "STE_OPT_CACHE_DIR"


def _user_cache_dir() -> Path:
    try:
        from platformdirs import user_cache_dir
    except ModuleNotFoundError:  # platformdirs is a dependency; this keeps odd installs working
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "ste-opt"
    return Path(user_cache_dir("ste-opt", appauthor=False))


def cache_dir(*parts: str, override: str | os.PathLike | None = None) -> Path:
    """The cache folder (joined with ``parts``), following the order in the module docstring.

    Parameters
    ----------
    *parts : str
        Sub-folders, e.g. ``cache_dir("genfl")``.
    override : path, optional
        Wins over the environment variable and the user's cache directory when not ``None``/empty.
    """
    if override:
        base = Path(override).expanduser()
    elif os.environ.get(ENV_VAR):
        base = Path(os.environ[ENV_VAR]).expanduser()
    else:
        base = _user_cache_dir()
    return base.joinpath(*parts)
