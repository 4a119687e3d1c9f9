"""Backends by name: :func:`get_backend` builds ``"local"``, ``"ray"``, ``"flower"`` (or any module of
this package that defines ``Backend``), or checks that an object implements the
:class:`~ste_opt.learning_hooks.backends.base.Backend` protocol."""
from __future__ import annotations

import importlib

from ...errors import InvalidScenarioError
from .base import Backend

__all__ = ["get_backend", "BACKEND_MODULES"]


#: Short backend names -> modules of :mod:`ste_opt.learning_hooks.backends`.
BACKEND_MODULES = {"ray": "ray_backend", "flower": "flower_backend"}


def get_backend(name: str | Backend = "local", **kwargs) -> Backend:
    """``"local"``, ``"ray"``, ``"flower"`` (or a module name of
    :mod:`ste_opt.learning_hooks.backends`, whose ``Backend(**kwargs)`` is built), or an object
    implementing the :class:`Backend` protocol."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend()
    if not isinstance(name, str):
        if not isinstance(name, Backend):
            raise InvalidScenarioError(
                f"backend {type(name).__name__} does not implement the Backend protocol "
                "(name, last_failures, run_round, close)", field="backend")
        return name
    try:
        mod = importlib.import_module(f"ste_opt.learning_hooks.backends.{BACKEND_MODULES.get(name, name)}")
    except ImportError as exc:
        raise InvalidScenarioError(f"unknown backend {name!r}", field="backend") from exc
    return mod.Backend(**kwargs)
