"""Training configuration: nested dict defaults, YAML files, ``--set a.b=c`` overrides.

A config names the whole experiment. Files live in ``ste_opt/configs/*.yaml`` (by name) or anywhere
(by path); only the keys that differ from :data:`DEFAULTS` need to be written.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..validate import load_yaml_text, parse_cli_value, read_text

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
            raise ConfigError(f"config file {p} not found", key="config")
        text = read_text(p, "config file", exc=ConfigError)
    else:
        res = resources.files("ste_opt") / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(f"unknown config {name_or_path!r}; bundled: {list_configs()}", key="config")
        text = res.read_text()
    data = load_yaml_text(text, f"config {name_or_path}", exc=ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {name_or_path}: top level must be a mapping", key="config")
    return data


def apply_overrides(cfg: Mapping, overrides: Sequence[str]) -> dict:
    """Apply ``a.b=value`` strings; values are parsed as YAML (``8``, ``null``, ``[qkv, proj]``)."""
    out = copy.deepcopy(dict(cfg))
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value", key="set")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key", key="set")
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section", key=key)
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"--set {key}: unknown key; known here: {', '.join(map(str, node))}", key=key)
        node[parts[-1]] = parse_cli_value(raw, f"--set {key}", exc=ConfigError)
    return out


def validate_config(cfg: Mapping) -> dict:
    """Check unknown keys, types and ranges (:mod:`.config_schema`), then the runtime keys
    (:mod:`.runtime_config`); returns the coerced config.

    Raises :class:`~ste_opt.errors.ConfigError` whose ``key`` is the dotted key (the runtime keys:
    :class:`~ste_opt.errors.InvalidScenarioError` naming the key)."""
    from .config_schema import check_config
    from .runtime_config import validate_runtime_keys

    return validate_runtime_keys(check_config(cfg, DEFAULTS))


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
