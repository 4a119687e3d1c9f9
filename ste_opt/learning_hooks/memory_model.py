"""Analytic training-memory model of split / federated LoRA fine-tuning of a timm ViT.

:func:`estimate` predicts, without building or running the model, the bytes one training step
holds on the client (device) and on the server, broken down exactly like the measured meter of
:mod:`ste_opt.learning_hooks.memory` (``params``, ``grads``, ``optimizer``, ``activations``,
``comm``), plus a ``workspace`` term the meter does not see (the largest transient forward buffer).

What autograd saves in one timm ``Block`` (pre-norm, fused attention, frozen weights, LoRA rank r
on ``qkv``), per sample and token, in elements (T tokens, D width, H heads, F = mlp_ratio·D):

====================================  =======================================================
``norm1`` input + mean/rstd            D + 2   (only when the block's input needs a gradient)
``norm1`` output (input of LoRA A)     D       (LoRA on qkv)
LoRA A output (input of LoRA B)        r       (per adapted projection)
q, k, v (views; eager: copies)         3·D
attention: fused (SDPA) → out + lse    D + H;  eager → the softmax: H·T
(``proj`` with LoRA) LoRA A output    r  (+ D eager: proj's input copy)
``norm2`` input + mean/rstd            D + 2
``fc1`` output (GELU input)            F
====================================  =======================================================

Frozen linears save only their (parameter) weight, which the meter excludes; a block that
neither holds adapters nor passes a gradient to one below saves nothing (ST-SFLora's client).
The server adds its final norm (D + 2, and its output because the head saves a view of it:
D per token), the head's cross-entropy (C + 2 per sample) and, when the client is trained,
its decoded input. The client adds the selection indices (8·N bytes per sample) and the merge
weights (N − K) and the gather's source (the last block's output, T·D) when it selects tokens
and is trained. These per-op terms were read off
``torch.autograd.graph.saved_tensors_hooks`` on timm's ``VisionTransformer`` (torch 2.x, CPU).
Tests compare :func:`estimate` with :func:`~.memory_measure.measure` (the real roles and meter) on
small ViTs; see ``docs/memory.md`` for the residual differences.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from ..errors import InvalidScenarioError

__all__ = ["ViTSpec", "SideEstimate", "MemoryEstimate", "METHODS", "OPTIMIZERS", "PRECISIONS",
           "vit_spec", "estimate", "estimate_table", "canonical_method"]

#: name -> (depth, width, heads); mlp_ratio 4 unless given. The timm ViT families.
_FAMILIES = {"tiny": (12, 192, 3), "small": (12, 384, 6), "base": (12, 768, 12),
             "large": (24, 1024, 16), "huge": (32, 1280, 16)}

#: Methods: client LoRA?, client trains?, server exists?, token selection?, bits on the wire.
METHODS = {
    "fedlora":        "whole model + LoRA on every block on the device; no activation traffic",
    "locallora":      "as FedLoRA (whole model on the device), no collaboration",
    "splitlora":      "sequential split learning: client blocks + LoRA trained, all tokens fp32, "
                      "one server copy",
    "sflora":         "parallel SFL-V1: client blocks + LoRA trained, all tokens, one server "
                      "adapter copy per client of the round",
    "st-sflora-full": "frozen client (forward only), all tokens fp32",
    "st-sflora":      "frozen client (forward only), K tokens + [CLS] + merged token, fp32",
    "tsflora":        "client LoRA trained, K tokens + [CLS] + merged token at b bits",
}
ALIASES = {"fedavg-lora": "fedlora", "local": "locallora", "sl": "splitlora", "sfl": "sflora",
           "st-sflora_full": "st-sflora-full", "stsflora": "st-sflora", "ts-sflora": "tsflora"}
OPTIMIZERS = {"sgd": 1, "sgd-nomomentum": 0, "adam": 2, "adamw": 2}
PRECISIONS = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class ViTSpec:
    """The numbers of a timm ``VisionTransformer`` that memory depends on."""

    depth: int
    embed_dim: int
    num_heads: int
    patch_size: int
    img_size: int = 224
    in_chans: int = 3
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    name: str = "custom"

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def block_params(self) -> int:
        d, f = self.embed_dim, self.mlp_hidden
        return 4 * d * d + 2 * d * f + 9 * d + f   # norm1, qkv, proj, norm2, fc1, fc2

    def embed_params(self) -> int:
        d = self.embed_dim
        return self.in_chans * self.patch_size ** 2 * d + d + d + (self.num_patches + 1) * d

    def validate(self) -> None:
        for k in ("depth", "embed_dim", "num_heads", "patch_size", "img_size", "in_chans", "num_classes"):
            if int(getattr(self, k)) < 1:
                raise InvalidScenarioError(f"{k} must be >= 1", field=k)
        if self.embed_dim % self.num_heads:
            raise InvalidScenarioError("embed_dim must be divisible by num_heads", field="num_heads")
        if self.img_size % self.patch_size:
            raise InvalidScenarioError("img_size must be a multiple of patch_size", field="patch_size")


def vit_spec(name: str = "vit_base_patch16_224", *, num_classes: int | None = None, **overrides) -> ViTSpec:
    """A :class:`ViTSpec` from a timm name (``vit_{tiny,small,base,large,huge}_patch{P}_{S}``,
    ``vit_compact``) or any timm ViT (built on the meta device, no weights), with overrides."""
    from .spec import COMPACT_DEFAULTS  # torch-free

    m = re.fullmatch(r"vit_(tiny|small|base|large|huge)_patch(\d+)_(\d+)(?:\..*)?", name)
    if name == "vit_compact":
        c = COMPACT_DEFAULTS
        spec = ViTSpec(depth=c["depth"], embed_dim=c["embed_dim"], num_heads=c["num_heads"],
                       patch_size=c["patch_size"], img_size=c["img_size"], in_chans=c["in_chans"],
                       mlp_ratio=c["mlp_ratio"], num_classes=10, name=name)
    elif m:
        depth, width, heads = _FAMILIES[m.group(1)]
        spec = ViTSpec(depth=depth, embed_dim=width, num_heads=heads, patch_size=int(m.group(2)),
                       img_size=int(m.group(3)), name=name)
    else:
        spec = _spec_from_timm(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    spec = replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    spec.validate()
    return spec


def _spec_from_timm(name: str) -> ViTSpec:
    import torch

    from ._compat import import_timm

    timm = import_timm()
    try:
        with torch.device("meta"):
            vit = timm.create_model(name, pretrained=False)
    except RuntimeError as exc:
        raise InvalidScenarioError(f"unknown timm model {name!r}: {exc}", field="model") from exc
    blk = vit.blocks[0]
    return ViTSpec(depth=len(vit.blocks), embed_dim=int(vit.embed_dim), num_heads=int(blk.attn.num_heads),
                   patch_size=int(vit.patch_embed.patch_size[0]), img_size=int(vit.patch_embed.img_size[0]),
                   in_chans=int(vit.patch_embed.proj.in_channels),
                   mlp_ratio=blk.mlp.fc1.out_features / vit.embed_dim, num_classes=int(vit.num_classes),
                   name=name)


@dataclass
class SideEstimate:
    """Bytes on one side; ``peak`` is what the meter measures (workspace excluded)."""

    params: int = 0
    grads: int = 0
    optimizer: int = 0
    activations: int = 0
    comm: int = 0
    workspace: int = 0

    @property
    def peak(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.comm

    @property
    def peak_with_workspace(self) -> int:
        return self.peak + self.workspace

    def as_dict(self) -> dict:
        d = asdict(self)
        d["peak"] = self.peak
        d["peak_with_workspace"] = self.peak_with_workspace
        return d


@dataclass
class MemoryEstimate:
    method: str
    spec: ViTSpec
    settings: dict
    client: SideEstimate
    server: SideEstimate
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"method": self.method, "spec": asdict(self.spec), "settings": dict(self.settings),
                "client": self.client.as_dict(), "server": self.server.as_dict(), "notes": list(self.notes)}


# --------------------------------------------------------------------------- per-op terms

def _block_saved(t: int, spec: ViTSpec, *, lora_targets, rank: int, input_grad: bool,
                 attention: str) -> int:
    """Elements autograd saves per sample in one block that holds LoRA or passes a gradient."""
    d, h, f = spec.embed_dim, spec.num_heads, spec.mlp_hidden
    per_token = 3 * d + d + 2 + f            # qkv output, norm2 input + stats, fc1 output
    # fused: SDPA saves q, k, v (views of the qkv output: 3·D above), its output and logsumexp;
    # eager: contiguous copies of scaled q, kᵀ, v (the 3·D above) and the softmax (below)
    per_token += (d + h) if attention == "fused" else 0
    if input_grad:
        per_token += d + 2                   # norm1 input + stats
    if "qkv" in lora_targets:
        per_token += d + rank                # norm1 output, LoRA A output
    if "proj" in lora_targets:
        # LoRA A output; proj's input is the SDPA output's own storage (fused) or a contiguous
        # copy of (attn @ v) transposed (eager)
        per_token += rank + (d if attention == "eager" else 0)
    extra = h * t * t if attention == "eager" else 0    # the softmax matrix
    return t * per_token + extra


def _workspace(t: int, spec: ViTSpec, attention: str) -> int:
    """Elements per sample of the largest transient inside one block's forward (not metered)."""
    d, h, f = spec.embed_dim, spec.num_heads, spec.mlp_hidden
    attn = 3 * t * d + (2 * h * t * t if attention == "eager" else t * d)
    mlp = 2 * t * f
    return t * d + max(attn, mlp)


def _payload_bytes(batch: int, tokens: int, dim: int, bits: int) -> int:
    """Packed body + fp16 (scale, offset) per token below 32 bits (``compress.encode``)."""
    body = math.ceil(batch * tokens * dim * bits / 8)
    side = 0 if bits >= 32 else batch * tokens * 4
    return body + side


def canonical_method(method: str) -> str:
    """The method's canonical name (aliases and case folded); raises on an unknown one."""
    m = method.strip().lower().replace("_", "-")
    m = ALIASES.get(m, m)
    if m not in METHODS:
        raise InvalidScenarioError(f"unknown method {method!r}; use one of {sorted(METHODS)}",
                                   field="method")
    return m


def estimate(model: str | ViTSpec | Mapping = "vit_base_patch16_224", *, method: str = "st-sflora",
             batch: int = 64, cut: int = 6, lora_rank: int = 16, lora_targets=("qkv",),
             tokens_kept: int | None = None, bits: int | None = None, grad_bits: int = 32,
             precision: str = "fp32", optimizer: str = "sgd", attention: str = "fused",
             num_classes: int | None = None, clients_per_round: int = 1,
             header_bytes: int | None = None) -> MemoryEstimate:
    """Predict the client and server training memory of one step (bytes).

    Parameters
    ----------
    model : timm name, :class:`ViTSpec` or a mapping of its fields
        e.g. ``"vit_base_patch16_224"``, or by numbers ``{"depth": 12, "embed_dim": 768,
        "num_heads": 12, "patch_size": 16, "img_size": 224}`` (patches = (img_size / patch_size)²).
    method : str
        One of :data:`METHODS` (``fedlora``, ``locallora``, ``splitlora``, ``sflora``,
        ``st-sflora-full``, ``st-sflora``, ``tsflora``).
    batch, cut : int
        Batch size B and the cut layer L_c (client blocks; ignored by FedLoRA/LocalLoRA).
    lora_rank, lora_targets : LoRA rank r and the adapted projections (``qkv``, ``proj``).
    tokens_kept : int, optional
        Patches kept K (ST-SFLora/TSFLora); the wire then carries K + 2 tokens. ``None``: all.
    bits : int, optional
        Uplink activation bits (default 32; TSFLora's 8). ``grad_bits`` for the downlink.
    precision : ``fp32`` | ``fp16`` | ``bf16``
        Element size of parameters, activations and optimizer state (pure low precision).
    optimizer : ``sgd`` (momentum: 1 state/param) | ``sgd-nomomentum`` | ``adam`` | ``adamw``
    attention : ``fused`` (SDPA, timm's default on torch 2) | ``eager`` (saves the B·H·T² softmax)
    clients_per_round : int
        SFL-V1 server: adapter + optimizer copies kept per client of the round (SFLora,
        ST-SFLora, TSFLora); FedLoRA's server: adapters received for aggregation.
    header_bytes : int, optional
        Framing of a message (JSON header with the labels); default 200 + 3·B bytes.
    """
    if isinstance(model, Mapping):       # by numbers: {"depth": 12, "embed_dim": 768, ...}
        try:
            model = ViTSpec(**dict(model))
        except TypeError as exc:
            raise InvalidScenarioError(f"bad ViT numbers: {exc}", field="model") from exc
    spec = model if isinstance(model, ViTSpec) else vit_spec(model, num_classes=num_classes)
    if isinstance(model, ViTSpec) and num_classes is not None:
        spec = replace(spec, num_classes=num_classes)
    spec.validate()
    meth = canonical_method(method)
    if precision not in PRECISIONS:
        raise InvalidScenarioError(f"precision must be one of {sorted(PRECISIONS)}", field="precision")
    if optimizer not in OPTIMIZERS:
        raise InvalidScenarioError(f"optimizer must be one of {sorted(OPTIMIZERS)}", field="optimizer")
    if attention not in ("fused", "eager"):
        raise InvalidScenarioError("attention must be 'fused' or 'eager'", field="attention")
    targets = tuple(lora_targets)
    if not targets or any(t not in ("qkv", "proj") for t in targets):
        raise InvalidScenarioError("lora_targets must be among ('qkv', 'proj')", field="lora_targets")
    if int(batch) < 1 or int(lora_rank) < 1 or int(clients_per_round) < 1:
        raise InvalidScenarioError("batch, lora_rank and clients_per_round must be >= 1", field="batch")
    n, d = spec.num_patches, spec.embed_dim
    whole = meth in ("fedlora", "locallora")
    if not whole and not 1 <= int(cut) <= spec.depth:
        raise InvalidScenarioError(f"cut={cut} must be in [1, {spec.depth}]", field="cut")
    select = meth in ("st-sflora", "tsflora")
    if select:
        k = n if tokens_kept is None else int(tokens_kept)
        if not 0 <= k <= n:
            raise InvalidScenarioError(f"tokens_kept={k} outside [0, {n}]", field="tokens_kept")
    elif tokens_kept is not None:
        raise InvalidScenarioError(f"{meth} sends every token; tokens_kept applies to st-sflora/tsflora",
                                   field="tokens_kept")
    b = 32 if bits is None else int(bits)
    for name, val in (("bits", b), ("grad_bits", int(grad_bits))):
        if not (1 <= val <= 16 or val == 32):
            raise InvalidScenarioError(f"{name}={val} must be 1..16 or 32", field=name)
    es = PRECISIONS[precision]
    nstate = OPTIMIZERS[optimizer]
    B = int(batch)
    hdr = 200 + 3 * B if header_bytes is None else int(header_bytes)
    r = int(lora_rank)
    lora_per_block = sum(4 * d * r if t == "qkv" else 2 * d * r for t in targets)
    head = d * spec.num_classes + spec.num_classes
    t_full = n + 1
    notes: list[str] = []

    def side(blocks: int, *, lora: bool, train: bool, t: int, input_grad: bool, embed: bool,
             tail: bool) -> SideEstimate:
        """One side holding ``blocks`` blocks (+ embedding, + final norm and head)."""
        params = blocks * (spec.block_params() + (lora_per_block if lora else 0))
        params += spec.embed_params() if embed else 0
        params += (2 * d + head) if tail else 0
        trainable = (blocks * lora_per_block if lora else 0) + (head if tail else 0)
        act = 0
        if train and blocks:
            for i in range(blocks):
                ig = input_grad or (lora and i > 0)
                act += _block_saved(t, spec, lora_targets=targets if lora else (), rank=r,
                                    input_grad=ig, attention=attention)
        if train and tail:
            act += t * (2 * d + 2) + spec.num_classes   # final norm input+stats, its output, log-softmax
        act_bytes = B * act * es + (8 * B if tail and train else 0)  # int64 targets
        ws = B * _workspace(t, spec, attention) * es if blocks else 0
        return SideEstimate(params=params * es, grads=trainable * es if train else 0,
                            optimizer=nstate * trainable * es if train else 0,
                            activations=act_bytes, workspace=ws)

    if whole:
        cl = side(spec.depth, lora=True, train=True, t=t_full, input_grad=False, embed=True, tail=True)
        adapters = (spec.depth * lora_per_block + head) * es
        sv = SideEstimate(comm=adapters * clients_per_round if meth == "fedlora" else 0)
        notes.append("no activation traffic; the device holds the whole model")
        settings = {"batch": B, "lora_rank": r, "lora_targets": list(targets), "precision": precision,
                    "optimizer": optimizer, "attention": attention, "tokens_on_wire": 0, "bits": None}
        return MemoryEstimate(meth, spec, settings, cl, sv, notes)

    c_lora = meth in ("splitlora", "sflora", "tsflora")
    t_srv = (k + 2) if select else t_full
    cl = side(int(cut), lora=c_lora, train=c_lora, t=t_full, input_grad=False, embed=True, tail=False)
    if select and c_lora:
        # gather saves its source (the last block's output), the argsort indices, merge weights
        cl.activations += B * (t_full * d * es + 8 * n + 4 * (n - k))
    up = _payload_bytes(B, t_srv, d, b) + hdr
    down = _payload_bytes(B, t_srv, d, grad_bits) + hdr if c_lora else 0
    cl.comm = up + down
    sv = side(spec.depth - int(cut), lora=True, train=True, t=t_srv, input_grad=c_lora, embed=False,
              tail=True)
    decoded = B * t_srv * d * 4
    sv.comm = (up - hdr) + decoded * (2 if c_lora else 1) + (down - hdr if c_lora else 0)
    if meth != "splitlora" and clients_per_round > 1:
        copies = (clients_per_round - 1) * (sv.grads + sv.optimizer)
        sv.params += copies  # SFL-V1: the other clients' adapter (+ optimizer) copies, stashed
        notes.append(f"server keeps {clients_per_round} adapter copies (SFL-V1)")
    if not c_lora:
        notes.append("client is frozen and forward-only: nothing saved for backward")
    settings = {"batch": B, "cut": int(cut), "lora_rank": r, "lora_targets": list(targets),
                "tokens_on_wire": t_srv, "bits": b, "grad_bits": grad_bits if c_lora else None,
                "precision": precision, "optimizer": optimizer, "attention": attention,
                "clients_per_round": int(clients_per_round)}
    return MemoryEstimate(meth, spec, settings, cl, sv, notes)


def estimate_table(est: MemoryEstimate, unit: str = "MiB") -> list[dict]:
    """Rows (component, client, server) in ``unit`` (``B``, ``KiB``, ``MiB``, ``GiB``)."""
    scale = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}[unit]
    rows = []
    for comp in ("params", "grads", "optimizer", "activations", "comm", "peak", "workspace",
                 "peak_with_workspace"):
        rows.append({"component": comp, f"client ({unit})": getattr(est.client, comp) / scale,
                     f"server ({unit})": getattr(est.server, comp) / scale})
    return rows
