"""Cut a timm ``VisionTransformer`` into a client module and a server module, with LoRA via peft.

client = patch embedding (+ [CLS], position embedding) + the first ``cut_layer`` blocks;
server = the remaining blocks + final norm + a *new* classification head. The backbone is frozen;
peft LoRA adapters go on the attention projections of the server blocks and optionally on the
client blocks (TSFLora). The cut slices ``vit.blocks``; no timm class is replaced or patched.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidScenarioError
from ._compat import import_peft, import_timm
from .compress import cls_attention
from .spec import COMPACT_DEFAULTS

__all__ = ["build_vit", "load_pretrained", "ClientModule", "ServerModule", "SplitModel", "split_vit",
           "add_lora", "trainable_state", "load_trainable_state", "COMPACT_DEFAULTS"]

#: The compact ViT used on CPU (digits 32×32, patch 4 → 64 patches).


def build_vit(arch: str = "vit_compact", num_classes: int = 10, checkpoint: str | Path | None = None,
              **overrides) -> nn.Module:
    """Create a timm ViT.

    Parameters
    ----------
    arch : str
        ``"vit_compact"`` (a small ``VisionTransformer`` built from :data:`COMPACT_DEFAULTS`
        updated with ``overrides``) or any timm model name, e.g. ``"vit_small_patch32_224"``,
        ``"vit_base_patch16_224"`` (``overrides`` go to ``timm.create_model``).
    num_classes : int
        Classes of the backbone's own head (the split replaces it anyway).
    checkpoint : path, optional
        Local weights (timm/torch checkpoint or ``.safetensors``); never downloaded.
    """
    timm = import_timm()
    from timm.models.vision_transformer import VisionTransformer

    if arch == "vit_compact":
        kw = {**COMPACT_DEFAULTS, **overrides}
        model = VisionTransformer(num_classes=num_classes, **kw)
    else:
        try:
            model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **overrides)
        except RuntimeError as exc:  # unknown model
            raise InvalidScenarioError(f"unknown timm model {arch!r}: {exc}", field="model.arch") from exc
    if not isinstance(model, VisionTransformer):
        raise InvalidScenarioError(f"{arch!r} is not a timm VisionTransformer", field="model.arch")
    if checkpoint is not None:
        load_pretrained(model, checkpoint)
    return model


def _read_state_dict(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, pickled code refused by weights_only, ...
        msg = " ".join(str(exc).split())[:160]
        raise InvalidScenarioError(f"model.checkpoint {path} is not a readable weights file: {msg}",
                                   field="model.checkpoint") from None
    for key in ("state_dict", "model", "model_state_dict", "backbone"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise InvalidScenarioError(f"{path} does not hold a state dict", field="model.checkpoint")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_pretrained(model: nn.Module, path: str | Path) -> dict:
    """Load local weights into a timm ViT; the classifier head is skipped if its shape differs.

    Position embeddings of another grid size are resampled by timm's own filter. Returns
    ``{"missing": [...], "unexpected": [...]}``; anything missing except the head is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidScenarioError(f"pretrained checkpoint {path} not found (run `ste-opt pretrain` "
                                   "or give a local timm/safetensors file)", field="model.checkpoint")
    from timm.models.vision_transformer import checkpoint_filter_fn

    sd = checkpoint_filter_fn(_read_state_dict(path), model)
    own = model.state_dict()
    for k in [k for k in sd if k.startswith("head.") and k in own and sd[k].shape != own[k].shape]:
        del sd[k]
    res = model.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not k.startswith("head.")]
    if missing:
        raise InvalidScenarioError(f"checkpoint {path} lacks {len(missing)} backbone tensors, e.g. "
                                   f"{missing[:3]}", field="model.checkpoint")
    return {"missing": list(res.missing_keys), "unexpected": list(res.unexpected_keys)}


class ClientModule(nn.Module):
    """Patch embedding + first ``cut_layer`` blocks; returns tokens and [CLS] attention scores."""

    def __init__(self, vit: nn.Module, cut_layer: int):
        super().__init__()
        if getattr(vit, "cls_token", None) is None:
            raise InvalidScenarioError("the ViT needs a [CLS] token (class_token=True)", field="model")
        if getattr(vit, "dynamic_img_size", False):
            raise InvalidScenarioError("dynamic_img_size ViTs are not supported", field="model")
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.reg_token = vit.reg_token
        self.pos_embed = vit.pos_embed
        self.pos_drop = vit.pos_drop
        self.patch_drop = vit.patch_drop
        self.norm_pre = vit.norm_pre
        self.no_embed_class = vit.no_embed_class
        self.dynamic_img_size = False
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.blocks = nn.Sequential(*list(vit.blocks)[:cut_layer])
        self.num_patches = int(self.patch_embed.num_patches)
        self.embed_dim = int(vit.embed_dim)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        from timm.models.vision_transformer import VisionTransformer

        x = self.patch_embed(images)
        x = VisionTransformer._pos_embed(self, x)  # timm's own logic, reading our attributes
        return self.norm_pre(self.patch_drop(x))

    def forward(self, images: torch.Tensor, with_scores: bool = True):
        """Returns ``(tokens (B, P+N, D), scores (B, N) or None)``; scores carry no gradient."""
        x = self.embed(images)
        if len(self.blocks) == 0:
            return x, None
        for blk in list(self.blocks)[:-1]:
            x = blk(x)
        last = self.blocks[-1]
        scores = None
        self.last_score_s = 0.0
        if with_scores:
            t0 = time.perf_counter()
            with torch.no_grad():
                scores = cls_attention(last.attn, last.norm1(x), self.num_prefix_tokens)
            self.last_score_s = time.perf_counter() - t0
        return last(x), scores


class ServerModule(nn.Module):
    """Remaining blocks + final norm + a new head on the [CLS] token (or the mean of the rest)."""

    def __init__(self, vit: nn.Module, cut_layer: int, num_classes: int):
        super().__init__()
        self.blocks = nn.Sequential(*list(vit.blocks)[cut_layer:])
        self.norm = vit.norm
        self.fc_norm = vit.fc_norm
        self.global_pool = vit.global_pool if vit.global_pool in ("token", "avg") else "token"
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.head = nn.Linear(int(vit.embed_dim), int(num_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(tokens))
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens:].mean(dim=1)
        return self.head(self.fc_norm(x))


def add_lora(module: nn.Module, rank: int, alpha: float, targets: Sequence[str] = ("qkv",),
             dropout: float = 0.0, seed: int = 0) -> int:
    """Inject peft LoRA into ``blocks.<i>.attn.<target>`` of ``module``; returns the number of
    adapted layers. Initialisation is seeded and leaves the global RNG untouched."""
    if len(getattr(module, "blocks", [])) == 0:
        return 0
    peft = import_peft()
    bad = [t for t in targets if t not in ("qkv", "proj")]
    if bad or not targets:
        raise InvalidScenarioError(f"LoRA targets must be among ('qkv', 'proj'), got {list(targets)}",
                                   field="lora.targets")
    pattern = r".*blocks\.\d+\.attn\.(" + "|".join(targets) + ")"
    cfg = peft.LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=float(dropout),
                          target_modules=pattern, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        peft.inject_adapter_in_model(cfg, module)
    return sum(1 for n, _ in module.named_modules() if n.endswith(tuple(targets)) and ".attn." in f".{n}")


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the trainable parameters (the adapter state that is federated)."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into the trainable parameters of ``module`` (names must match exactly)."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing, extra = set(params) - set(state), set(state) - set(params)
        raise InvalidScenarioError(f"adapter state mismatch: missing {sorted(missing)[:3]}, "
                                   f"unexpected {sorted(extra)[:3]}", field="state")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n].to(p.dtype))


@dataclass
class SplitModel:
    client: ClientModule
    server: ServerModule

    @property
    def num_patches(self) -> int:
        return self.client.num_patches

    @property
    def embed_dim(self) -> int:
        return self.client.embed_dim


def split_vit(vit: nn.Module, cut_layer: int, num_classes: int, *, lora_rank: int = 8,
              lora_alpha: float = 16.0, lora_targets: Sequence[str] = ("qkv",),
              client_lora: bool = False, server_lora: bool = True, lora_dropout: float = 0.0,
              seed: int = 0) -> SplitModel:
    """Freeze ``vit``, cut it after block ``cut_layer`` and add LoRA (and a new head).

    Parameters
    ----------
    cut_layer : int
        L_c in [1, depth]: blocks on the client. (``depth`` leaves the server only norm + head.)
    client_lora, server_lora : bool
        Where LoRA adapters go. The new head is always trainable.
    """
    depth = len(vit.blocks)
    if not 1 <= int(cut_layer) <= depth:
        raise InvalidScenarioError(f"cut_layer={cut_layer} must be in [1, {depth}]", field="model.cut_layer")
    for p in vit.parameters():
        p.requires_grad_(False)
    client = ClientModule(vit, int(cut_layer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) + 7919)
        server = ServerModule(vit, int(cut_layer), num_classes)
    if client_lora:
        add_lora(client, lora_rank, lora_alpha, lora_targets, lora_dropout, seed=seed + 1)
    if server_lora:
        add_lora(server, lora_rank, lora_alpha, lora_targets, lora_dropout, seed=seed + 2)
    for p in server.head.parameters():
        p.requires_grad_(True)
    return SplitModel(client, server)
