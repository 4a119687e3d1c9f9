"""Declared types and ranges of the training-config keys (one place, checked up front).

:func:`check_config` walks a resolved config against :data:`SCHEMA`; a key of ``DEFAULTS`` without
an entry here gets the type of its default (number, integer, boolean, string, list) so keys added
later are still type-checked. Every refusal is a :class:`~ste_opt.errors.ConfigError` whose
``key`` is the dotted key (``optim.lr``), with one line saying what is expected.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..validate import Opt, as_bool, as_float, as_int

__all__ = ["SCHEMA", "check_config"]

_BITS = Opt("int", lo=1, hi=32)

SCHEMA: dict[str, Opt] = {
    "name": Opt("str"),
    "seed": Opt("int", lo=0),
    "mode": Opt("choice", choices=("split", "fedlora")),
    "data.name": Opt("str"),
    "data.root": Opt("str", none_ok=True),
    "data.image_size": Opt("int", lo=1, hi=4096),
    "data.source_fraction": Opt("float", lo=0, hi=1, hi_open=True),
    "data.test_fraction": Opt("float", lo=0, hi=1, lo_open=True, hi_open=True),
    "data.max_per_class": Opt("int", lo=1, none_ok=True),
    "model.arch": Opt("str"),
    "model.patch_size": Opt("int", lo=1),
    "model.embed_dim": Opt("int", lo=1, hi=65536),
    "model.depth": Opt("int", lo=1, hi=1000),
    "model.num_heads": Opt("int", lo=1),
    "model.mlp_ratio": Opt("float", lo=0, lo_open=True, hi=64),
    "model.cut_layer": Opt("int", lo=0),
    "model.checkpoint": Opt("str", none_ok=True),
    "lora.rank": Opt("int", lo=1, hi=4096),
    "lora.alpha": Opt("float", lo=0, lo_open=True),
    "lora.dropout": Opt("float", lo=0, hi=1, hi_open=True),
    "lora.client": Opt("bool"),
    "lora.server": Opt("bool"),
    "federation.num_clients": Opt("int", lo=1, hi=1_000_000),
    "federation.clients_per_round": Opt("int", lo=1),
    "federation.partition": Opt("choice", choices=("dirichlet", "shard", "iid")),
    "federation.alpha": Opt("float", lo=0, lo_open=True),
    "federation.shards_per_client": Opt("int", lo=1),
    "federation.min_client_size": Opt("int", lo=0),
    "federation.rounds": Opt("int", lo=1),
    "federation.local_epochs": Opt("int", lo=1),
    "federation.local_steps": Opt("int", lo=1, none_ok=True),
    "federation.batch_size": Opt("int", lo=1),
    "federation.aggregator": Opt("str"),
    "optim.lr": Opt("float", lo=0, lo_open=True),
    "optim.momentum": Opt("float", lo=0, hi=1, hi_open=True),
    "optim.weight_decay": Opt("float", lo=0),
    "compression.tokens_kept": Opt("int", lo=1, none_ok=True),
    "compression.keep_ratio": Opt("float", lo=0, hi=1, none_ok=True),
    "compression.bits": _BITS,
    "compression.grad_bits": _BITS,
    "pretrain.epochs": Opt("int", lo=0),
    "pretrain.lr": Opt("float", lo=0, lo_open=True),
    "pretrain.batch_size": Opt("int", lo=1),
    "pretrain.weight_decay": Opt("float", lo=0),
    "eval.batch_size": Opt("int", lo=1),
    "output.dir": Opt("str", none_ok=True),
    "output.checkpoint_every": Opt("int", lo=0, none_ok=True),
}


def _by_default(default: Any, value: Any, key: str):
    """Type check from the default's type, for keys without a declaration."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        return as_bool(value, key, exc=ConfigError)
    if isinstance(default, numbers.Integral):
        return as_int(value, key, exc=ConfigError)
    if isinstance(default, numbers.Real):
        return as_float(value, key, exc=ConfigError)
    # a string default may stand for a choice that also takes other types ("auto" | true | false):
    # such keys are checked by their own validator
    if isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} must be a list, got {value!r}", key=key)
    return value


def check_config(cfg: Mapping, defaults: Mapping) -> dict:
    """Type/range check every key (and the cross-key rules); returns the coerced config."""
    def walk(node: Mapping, ref: Mapping, path: str) -> dict:
        if not isinstance(node, Mapping):
            raise ConfigError(f"{path[:-1]} must be a mapping of keys, got {node!r}", key=path[:-1])
        out = {}
        for k, v in node.items():
            key = f"{path}{k}"
            if not isinstance(k, str) or k not in ref:
                raise ConfigError(f"unknown config key {key}; known here: {', '.join(map(str, ref))}",
                                  key=key)
            if isinstance(ref[k], Mapping):
                out[k] = walk(v, ref[k], f"{key}.")
            elif key in SCHEMA:
                out[k] = SCHEMA[key].check(v, key, ConfigError)
            else:
                out[k] = _by_default(ref[k], v, key)
        return out

    c = walk(cfg, defaults, "")
    m, f, comp = c["model"], c["federation"], c["compression"]
    if m["embed_dim"] % m["num_heads"]:
        raise ConfigError(f"model.num_heads={m['num_heads']} must divide model.embed_dim="
                          f"{m['embed_dim']}", key="model.num_heads")
    if m["cut_layer"] > m["depth"]:
        raise ConfigError(f"model.cut_layer={m['cut_layer']} must be in [0, model.depth={m['depth']}]",
                          key="model.cut_layer")
    if m["patch_size"] > c["data"]["image_size"]:
        raise ConfigError(f"model.patch_size={m['patch_size']} exceeds data.image_size="
                          f"{c['data']['image_size']}", key="model.patch_size")
    if f["clients_per_round"] > f["num_clients"]:
        raise ConfigError(f"federation.clients_per_round={f['clients_per_round']} must be in "
                          f"[1, federation.num_clients={f['num_clients']}]", key="federation.clients_per_round")
    for key in ("bits", "grad_bits"):
        b = comp[key]
        if not (1 <= b <= 16 or b == 32):
            raise ConfigError(f"compression.{key}={b} must be 1..16 or 32", key=f"compression.{key}")
    if comp["tokens_kept"] is not None and comp["keep_ratio"] is not None:
        raise ConfigError("give compression.tokens_kept or keep_ratio, not both", key="compression.tokens_kept")
    if not c["lora"]["targets"] or not all(isinstance(t, str) for t in c["lora"]["targets"]):
        raise ConfigError(f"lora.targets must be a non-empty list of module names, got "
                          f"{c['lora']['targets']!r}", key="lora.targets")
    if c["data"]["source_fraction"] + c["data"]["test_fraction"] >= 1:
        raise ConfigError("data.source_fraction + data.test_fraction must be < 1",
                          key="data.test_fraction")
    return c
