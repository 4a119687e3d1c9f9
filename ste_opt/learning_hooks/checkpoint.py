"""Training checkpoints that cannot execute code: safetensors tensors + JSON metadata, validated.

One file, ``checkpoint.safetensors``, written atomically (temporary file, fsync, ``os.replace``):

* tensors: ``client/<name>`` and ``server/<name>`` (the global adapters after the round),
  ``optim/<group>/<name>`` for any optimizer state a caller stores;
* header metadata ``ste_opt`` (a JSON string): ``format`` (version), ``round`` (last completed
  round), ``config`` (the resolved config), ``config_hash`` (:func:`config_hash`), ``keys``
  (name → shape, dtype of every tensor), ``history`` and ``client_rows`` (the CSV rows so far),
  ``optim`` (JSON part of the optimizer state), ``resumes`` (forced resumes so far).

Loading never unpickles: safetensors parses a JSON header and raw buffers. Every mismatch with
what the trainer expects (missing/extra keys, shapes, dtypes, an empty adapter dict, a round that
disagrees with the history, another config) raises :class:`~ste_opt.errors.ConfigError` with one
line naming it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..validate import atomic_write_bytes

__all__ = ["CHECKPOINT_NAME", "FORMAT", "config_hash", "config_diff", "save_checkpoint",
           "load_checkpoint", "validate_state", "Checkpoint", "HASH_EXCLUDED", "jsonable"]

CHECKPOINT_NAME = "checkpoint.safetensors"
FORMAT = 1
#: Config keys that do not change what a round computes: resuming with other values is allowed
#: (more rounds, another output folder, another run name, progress/logging settings).
HASH_EXCLUDED = ("name", "federation.rounds", "output")


def _strip(cfg: Mapping, excluded=HASH_EXCLUDED, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if key in excluded:
            continue
        out[k] = _strip(v, excluded, f"{key}.") if isinstance(v, Mapping) else v
    return out


def jsonable(v: Any):
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return v


def config_hash(cfg: Mapping) -> str:
    """SHA-256 of the canonical JSON of the config without :data:`HASH_EXCLUDED` keys."""
    text = json.dumps(jsonable(_strip(cfg)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_diff(old: Mapping, new: Mapping, prefix: str = "") -> dict[str, tuple]:
    """``{dotted key: (old, new)}`` for the keys whose values differ (hash-relevant keys only)."""
    a, b = _strip(old) if not prefix else old, _strip(new) if not prefix else new
    out: dict[str, tuple] = {}
    for k in sorted(set(a) | set(b), key=str):
        x, y = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out.update(config_diff(x, y, f"{prefix}{k}."))
        elif jsonable(x) != jsonable(y):
            out[f"{prefix}{k}"] = (x, y)
    return out


class Checkpoint:
    """What :func:`load_checkpoint` returns: ``round``, ``client``, ``server`` (name → array),
    ``optim_tensors``, ``meta`` (the JSON metadata)."""

    def __init__(self, round_idx: int, client: dict, server: dict, optim_tensors: dict, meta: dict):
        self.round = round_idx
        self.client = client
        self.server = server
        self.optim_tensors = optim_tensors
        self.meta = meta

    @property
    def history(self) -> list[dict]:
        return list(self.meta.get("history", []))

    @property
    def client_rows(self) -> list[dict]:
        return list(self.meta.get("client_rows", []))

    @property
    def config(self) -> dict:
        return dict(self.meta.get("config", {}))


def save_checkpoint(path: str | Path, *, round_idx: int, client: Mapping[str, np.ndarray],
                    server: Mapping[str, np.ndarray], config: Mapping, history=(), client_rows=(),
                    optim_tensors: Mapping[str, np.ndarray] | None = None, optim_meta=None,
                    resumes=()) -> Path:
    """Write a checkpoint atomically; returns its path."""
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    for prefix, state in (("client", client), ("server", server), ("optim", optim_tensors or {})):
        for k, v in state.items():
            tensors[f"{prefix}/{k}"] = np.ascontiguousarray(np.asarray(v))
    meta = {"format": FORMAT, "round": int(round_idx), "config": jsonable(config),
            "config_hash": config_hash(config),
            "keys": {k: [list(v.shape), str(v.dtype)] for k, v in tensors.items()},
            "history": jsonable(list(history)), "client_rows": jsonable(list(client_rows)),
            "optim": jsonable(optim_meta), "resumes": jsonable(list(resumes))}
    blob = save(tensors, metadata={"ste_opt": json.dumps(meta, default=str)})
    return atomic_write_bytes(path, blob, exc=ConfigError)


def _bad(path, what: str) -> ConfigError:
    return ConfigError(f"checkpoint {path}: {what}", key="resume")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and self-check a checkpoint (header, metadata, keys/shapes/dtypes, round/history)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}", key="resume")
    try:
        tensors: dict[str, np.ndarray] = {}
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
            for k in fh.keys():
                tensors[k] = fh.get_tensor(k)
    except ConfigError:
        raise
    except Exception as e:  # safetensors raises its own SafetensorError and OSError/ValueError
        msg = " ".join(str(e).split())[:200]
        raise _bad(path, f"not a readable safetensors file (truncated or corrupt?): {msg}") from None
    raw = header.get("ste_opt")
    if raw is None:
        raise _bad(path, "no ste_opt metadata (not written by ste-opt)")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise _bad(path, f"metadata is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise _bad(path, "metadata must be a JSON object")
    if meta.get("format") != FORMAT:
        raise _bad(path, f"format {meta.get('format')!r} is not supported (expected {FORMAT})")
    r = meta.get("round")
    if not isinstance(r, int) or isinstance(r, bool) or r < -1:
        raise _bad(path, f"round must be an integer >= -1, got {r!r}")
    for key in ("config", "keys"):
        if not isinstance(meta.get(key), dict):
            raise _bad(path, f"metadata field {key!r} missing or not an object")
    for key in ("history", "client_rows", "resumes"):
        if not isinstance(meta.get(key, []), list) or not all(isinstance(x, dict) for x in meta.get(key, [])):
            raise _bad(path, f"metadata field {key!r} must be a list of objects")
    if meta.get("config_hash") != config_hash(meta["config"]):
        raise _bad(path, "config_hash does not match the stored config (edited file?)")
    declared = meta["keys"]
    if set(declared) != set(tensors):
        extra = sorted(set(tensors) - set(declared))[:3]
        missing = sorted(set(declared) - set(tensors))[:3]
        raise _bad(path, f"tensor keys disagree with the metadata (missing {missing}, extra {extra})")
    for k, arr in tensors.items():
        shape, dtype = declared[k]
        if list(arr.shape) != list(shape) or str(arr.dtype) != dtype:
            raise _bad(path, f"tensor {k}: shape/dtype {list(arr.shape)}/{arr.dtype} disagree with "
                             f"the metadata {shape}/{dtype}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise _bad(path, f"tensor {k} holds non-finite values")
    rounds = [row.get("round") for row in meta.get("history", [])]
    if rounds != list(range(r + 1)):
        raise _bad(path, f"history holds rounds {rounds[:5]}{'...' if len(rounds) > 5 else ''} but the "
                         f"checkpoint is at round {r} (expected 0..{r})")
    split = {"client": {}, "server": {}, "optim": {}}
    for k, arr in tensors.items():
        prefix, _, name = k.partition("/")
        if prefix not in split or not name:
            raise _bad(path, f"unexpected tensor key {k!r}")
        split[prefix][name] = arr
    return Checkpoint(r, split["client"], split["server"], split["optim"], meta)


def validate_state(path, part: str, got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
    """The checkpoint's adapters must match the model: same keys, shapes and dtypes."""
    if expected and not got:
        raise _bad(path, f"the {part} adapter dict is empty but the model has {len(expected)} "
                         "adapter tensors")
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise _bad(path, f"{part} adapters do not match the model (missing {missing[:3]}, "
                         f"unexpected {extra[:3]}): another lora/model config?")
    for k, ref in expected.items():
        a = got[k]
        if tuple(a.shape) != tuple(np.shape(ref)):
            raise _bad(path, f"{part} adapter {k} has shape {tuple(a.shape)}, the model expects "
                             f"{tuple(np.shape(ref))} (another lora.rank or model size?)")
        if np.asarray(ref).dtype != a.dtype:
            raise _bad(path, f"{part} adapter {k} has dtype {a.dtype}, the model expects "
                             f"{np.asarray(ref).dtype}")

