"""A restricted unpickler for the CIFAR python archives.

The CIFAR-10/100 "python version" batches are pickles, and ``pickle.load`` runs whatever callable a
pickle names. :func:`restricted_load` refuses every global except the few NumPy reconstructors an
array needs, so a batch can only produce dicts, lists, tuples, bytes, str, int/float and NumPy
arrays: a crafted file raises :class:`pickle.UnpicklingError` instead of executing code. (This is
why the CIFAR readers never call torchvision's dataset classes, which use plain ``pickle.load``.)
"""
from __future__ import annotations

import io
import pickle
from typing import IO, Any

__all__ = ["restricted_load", "restricted_loads", "ALLOWED_GLOBALS"]

#: (module, name) pairs a CIFAR batch may reference: NumPy array/dtype/scalar reconstruction
#: (NumPy 1.x and 2.x module names) and ``_codecs.encode`` (bytes pickled by Python 3 at
#: protocol 2). Nothing else resolves.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} in a data pickle")
        import importlib

        return getattr(importlib.import_module(module), name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a data pickle")


def _check(obj: Any, depth: int = 0) -> Any:
    """Only containers of plain data and numeric NumPy arrays survive."""
    import numpy as np

    if depth > 8:
        raise pickle.UnpicklingError("data pickle nested too deeply")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check(v, depth + 1)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("object arrays are not allowed in a data pickle")
    elif not isinstance(obj, (bytes, str, int, float, bool, type(None), np.generic)):
        raise pickle.UnpicklingError(f"unexpected {type(obj).__name__} in a data pickle")
    return obj


def restricted_load(fh: IO[bytes], *, encoding: str = "bytes") -> Any:
    """``pickle.load`` that resolves only :data:`ALLOWED_GLOBALS` and returns only plain data.

    ``encoding="bytes"`` reads Python-2 strings (the CIFAR archives' keys) as ``bytes``.
    """
    return _check(_RestrictedUnpickler(fh, encoding=encoding).load())


def restricted_loads(data: bytes, *, encoding: str = "bytes") -> Any:
    """:func:`restricted_load` of an in-memory pickle."""
    return restricted_load(io.BytesIO(data), encoding=encoding)
