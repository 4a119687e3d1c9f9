"""Training configuration: nested dict defaults, YAML files, ``--set a.b=c`` overrides.

A config names the whole experiment. Files live in ``ste_opt/configs/*.yaml`` (by name) or anywhere
(by path); only the keys that differ from :data:`DEFAULTS` need to be written.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import yaml

from ..errors import InvalidScenarioError
from ..model.payload import valid_bit_width

__all__ = ["DEFAULTS", "load_config", "merge", "apply_overrides", "list_configs", "validate_config",
           "default_checkpoint_path", "tokens_kept_for"]

DEFAULTS: dict = {
    "name": "run",
    "seed": 0,
    "mode": "split",              # split (SFL-V1) | fedlora (whole model on every device)
    "device": "auto",             # auto | cpu | cuda | cuda:<i> | mps (client side + everything else)
    "server_device": None,        # null = device; the server part may sit elsewhere
    "amp": "off",                 # off | bf16 | fp16 (autocast; fp16 adds a gradient scaler)
    "compile": False,             # torch.compile the client and server modules
    "data": {"name": "digits", "root": None, "image_size": 32,
             "source_fraction": 0.3, "test_fraction": 0.2, "max_per_class": None,
             "num_workers": 0, "pin_memory": "auto", "augment": True},
    "model": {"arch": "vit_compact", "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3,
              "mlp_ratio": 2.0, "cut_layer": 3, "checkpoint": "auto"},
    "lora": {"rank": 8, "alpha": 16, "targets": ["qkv"], "dropout": 0.0,
             "client": True, "server": True},
    "federation": {"num_clients": 10, "clients_per_round": 10, "partition": "dirichlet",
                   "alpha": 0.5, "shards_per_client": 2, "min_client_size": 8, "rounds": 5,
                   "local_epochs": 1, "local_steps": None, "batch_size": 32, "aggregator": "fedavg"},
    "optim": {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.0},
    "compression": {"tokens_kept": None, "keep_ratio": None, "bits": 32, "grad_bits": 32},
    "pretrain": {"epochs": 40, "lr": 1e-3, "batch_size": 64, "weight_decay": 0.05},
    "eval": {"batch_size": 256},
    "output": {"dir": None, "checkpoint_every": 1, "tensorboard": False, "cache_dir": None},
}


def merge(base: Mapping, update: Mapping) -> dict:
    """Recursive dict merge (``update`` wins); returns a new dict."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def list_configs() -> list[str]:
    """Names of the bundled configs (``ste_opt/configs/*.yaml``)."""
    root = resources.files("ste_opt") / "configs"
    try:
        return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
    except FileNotFoundError:
        return []


def _read_yaml(name_or_path: str | Path) -> dict:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise InvalidScenarioError(f"config file {p} not found", field="config")
        text = p.read_text()
    else:
        res = resources.files("ste_opt") / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise InvalidScenarioError(f"unknown config {name_or_path!r}; bundled: {list_configs()}",
                                       field="config")
        text = res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidScenarioError(f"config {name_or_path}: invalid YAML ({exc})", field="config") from exc
    if not isinstance(data, dict):
        raise InvalidScenarioError(f"config {name_or_path}: top level must be a mapping", field="config")
    return data


def apply_overrides(cfg: Mapping, overrides: Sequence[str]) -> dict:
    """Apply ``a.b=value`` strings; values are parsed as YAML (``8``, ``null``, ``[qkv, proj]``)."""
    out = copy.deepcopy(dict(cfg))
    for item in overrides or ():
        if "=" not in item:
            raise InvalidScenarioError(f"--set {item!r}: expected key=value", field="set")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise InvalidScenarioError(f"--set {key}: {p!r} is not a section", field=key)
            node = node[p]
        if parts[-1] not in node:
            raise InvalidScenarioError(f"--set {key}: unknown key", field=key)
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def validate_config(cfg: Mapping) -> dict:
    """Check unknown keys and a few ranges; returns the config."""
    def walk(node, ref, path):
        for k, v in node.items():
            if k not in ref:
                raise InvalidScenarioError(f"unknown config key {path}{k}", field=f"{path}{k}")
            if isinstance(ref[k], dict) and isinstance(v, Mapping):
                walk(v, ref[k], f"{path}{k}.")
    walk(cfg, DEFAULTS, "")
    from .runtime_config import validate_runtime_keys

    cfg = validate_runtime_keys(cfg)
    if cfg["mode"] not in ("split", "fedlora"):
        raise InvalidScenarioError("mode must be 'split' or 'fedlora'", field="mode")
    c = cfg["compression"]
    if c["tokens_kept"] is not None and c["keep_ratio"] is not None:
        raise InvalidScenarioError("give compression.tokens_kept or keep_ratio, not both",
                                   field="compression.tokens_kept")
    if c["keep_ratio"] is not None and not 0 <= float(c["keep_ratio"]) <= 1:
        raise InvalidScenarioError("compression.keep_ratio must be in [0, 1]", field="compression.keep_ratio")
    for key in ("bits", "grad_bits"):
        b = int(c[key])
        if not valid_bit_width(b):
            raise InvalidScenarioError(f"compression.{key}={b} must be 1..16 or 32", field=f"compression.{key}")
    f = cfg["federation"]
    if not 1 <= int(f["clients_per_round"]) <= int(f["num_clients"]):
        raise InvalidScenarioError("federation.clients_per_round must be in [1, num_clients]",
                                   field="federation.clients_per_round")
    if f["partition"] not in ("dirichlet", "shard", "iid"):
        raise InvalidScenarioError("federation.partition must be dirichlet, shard or iid",
                                   field="federation.partition")
    positive_ints = {"federation.num_clients": f["num_clients"], "federation.rounds": f["rounds"],
                     "federation.local_epochs": f["local_epochs"],
                     "federation.batch_size": f["batch_size"],
                     "federation.shards_per_client": f["shards_per_client"],
                     "lora.rank": cfg["lora"]["rank"], "model.depth": cfg["model"]["depth"],
                     "eval.batch_size": cfg["eval"]["batch_size"]}
    if f["local_steps"] is not None:
        positive_ints["federation.local_steps"] = f["local_steps"]
    for key, v in positive_ints.items():
        if int(v) != v or int(v) < 1:
            raise InvalidScenarioError(f"{key} must be a positive integer, got {v!r}", field=key)
    positive = {"federation.alpha": f["alpha"], "optim.lr": cfg["optim"]["lr"]}
    for key, v in positive.items():
        if not float(v) > 0:
            raise InvalidScenarioError(f"{key} must be > 0, got {v!r}", field=key)
    if not 0 <= int(cfg["model"]["cut_layer"]) <= int(cfg["model"]["depth"]):
        raise InvalidScenarioError("model.cut_layer must be in [0, model.depth]", field="model.cut_layer")
    d = cfg["data"]
    for key in ("source_fraction", "test_fraction"):
        if not 0 <= float(d[key]) < 1:
            raise InvalidScenarioError(f"data.{key} must be in [0, 1)", field=f"data.{key}")
    return dict(cfg)


def load_config(name_or_path: str | Path | Mapping | None = None, overrides: Sequence[str] = ()) -> dict:
    """DEFAULTS ← config file (by bundled name or path, or a dict) ← ``--set`` overrides."""
    if name_or_path is None:
        data = {}
    elif isinstance(name_or_path, Mapping):
        data = dict(name_or_path)
    else:
        data = _read_yaml(name_or_path)
    cfg = merge(DEFAULTS, data)
    cfg = apply_overrides(cfg, overrides)
    return validate_config(cfg)


def tokens_kept_for(cfg: Mapping, num_patches: int) -> int | None:
    """K from ``compression.tokens_kept`` or ``round(keep_ratio · N)``; ``None`` = no selection."""
    c = cfg["compression"]
    if c["tokens_kept"] is not None:
        return int(c["tokens_kept"])
    if c["keep_ratio"] is not None:
        return int(round(float(c["keep_ratio"]) * num_patches))
    return None


def default_checkpoint_path(cfg: Mapping) -> Path:
    """``<cache>/pretrained_<data>_<arch>_<shape>_s<seed>.pt``; ``<cache>`` is the config key
    ``output.cache_dir``, else ``$STE_OPT_CACHE_DIR``, else the user's cache folder
    (:func:`ste_opt.cache.cache_dir`)."""
    from ..cache import cache_dir

    m, d = cfg["model"], cfg["data"]
    tag = f"{m['arch']}_p{m['patch_size']}_d{m['embed_dim']}x{m['depth']}h{m['num_heads']}_i{d['image_size']}"
    override = (cfg.get("output") or {}).get("cache_dir")
    return cache_dir(override=override) / f"pretrained_{d['name']}_{tag}_s{cfg['seed']}.pt"
