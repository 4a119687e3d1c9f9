"""Import guard for timm and peft next to a broken torchvision wheel.

The only torchvision release that pins torch 2.13.0 is a CUDA build whose compiled extension fails
to load next to the CPU torch: ``import torchvision`` raises
``RuntimeError: operator torchvision::nms does not exist`` while registering the Python fake/meta
kernels of its C++ operators (docs/training.md, "timm, peft and torchvision"). timm (``timm.layers`` imports
``torchvision.ops.misc``) and peft (through transformers) then fail too.

:func:`ensure_torchvision` does nothing where torchvision imports normally. Otherwise it defines the
*schemas* of the two operators torchvision's Python layer registers kernels for at import time
(``nms``, ``qnms``) in a ``torch.library`` namespace, so that the pure-Python parts (transforms,
``ops.misc``) import. No compiled torchvision operator is provided: calling ``torchvision.ops.nms``
still fails, which nothing in ste-opt does.

Always import timm and peft through :func:`import_timm` / :func:`import_peft`.
"""
from __future__ import annotations

import importlib
import sys

__all__ = ["ensure_torchvision", "import_timm", "import_peft", "torchvision_status"]

_STATUS: str | None = None
_LIBRARY = None  # keeps the torch.library.Library alive (its definitions die with it)


def _is_broken_operator_error(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and "torchvision::" in str(exc)


def _purge_torchvision_modules() -> None:
    for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision() -> str:
    """Make ``import torchvision`` work if it can, and say how.

    Returns
    -------
    str
        ``"native"`` (torchvision imported normally), ``"shimmed"`` (the broken-operator error was
        caught and the operator schemas were registered) or ``"absent"`` (torchvision is not
        installed; peft still works, timm does not).
    """
    global _STATUS, _LIBRARY
    if _STATUS is not None:
        return _STATUS
    try:
        importlib.import_module("torchvision")
        _STATUS = "native"
        return _STATUS
    except ImportError:
        _purge_torchvision_modules()
        _STATUS = "absent"
        return _STATUS
    except RuntimeError as exc:
        if not _is_broken_operator_error(exc):
            raise
    _purge_torchvision_modules()
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY = lib
    importlib.import_module("torchvision")
    _STATUS = "shimmed"
    return _STATUS


def torchvision_status() -> str | None:
    """The result of :func:`ensure_torchvision` if it ran, else ``None``."""
    return _STATUS


def import_timm():
    """Import and return the ``timm`` module (running the torchvision guard first)."""
    status = ensure_torchvision()
    try:
        return importlib.import_module("timm")
    except ImportError as exc:
        hint = " (torchvision is not installed; timm needs it)" if status == "absent" else ""
        raise ImportError(f"timm is needed for training: pip install 'ste-opt[train]'{hint}") from exc


def import_peft():
    """Import and return the ``peft`` module (running the torchvision guard first)."""
    ensure_torchvision()
    try:
        return importlib.import_module("peft")
    except ImportError as exc:
        raise ImportError("peft is needed for training: pip install 'ste-opt[train]'") from exc
