"""One real training step through the trainer's roles and meter: the ground truth that the analytic
memory model (:mod:`.memory_model`) is tested against. Small models only (it builds the model)."""
from __future__ import annotations

from .memory_model import canonical_method

__all__ = ["measure"]


def measure(model: str = "vit_compact", *, method: str = "sflora", batch: int = 8, cut: int = 3,
            lora_rank: int = 8, lora_targets=("qkv",), tokens_kept: int | None = None,
            bits: int | None = None, grad_bits: int = 32, num_classes: int = 10, seed: int = 0,
            attention: str = "fused", **model_overrides) -> dict:
    """Run ONE real training step of ``method`` through the project's roles and meter (random
    weights and images); returns ``{"client": MemoryReport, "server": MemoryReport | None}``.
    Small models only (it builds the model); this is the ground truth :func:`estimate` is tested
    against."""
    import numpy as np
    import torch

    from .data import ImageDataset
    from .roles import ClientRole, FedLoRAClientRole, ServerRole, unframe
    from .schedule import ClientPlan
    from .split import build_vit, split_vit

    meth = canonical_method(method)
    torch.manual_seed(seed)
    vit = build_vit(model, num_classes=num_classes, **model_overrides)
    for blk in vit.blocks:
        blk.attn.fused_attn = attention == "fused"
    whole = meth in ("fedlora", "locallora")
    c_lora = whole or meth in ("splitlora", "sflora", "tsflora")
    sm = split_vit(vit, vit.blocks.__len__() if whole else cut, num_classes, lora_rank=lora_rank,
                   lora_alpha=2 * lora_rank, lora_targets=tuple(lora_targets), client_lora=c_lora, seed=seed)
    size, ch = int(sm.client.patch_embed.img_size[0]), int(sm.client.patch_embed.proj.in_channels)
    rng = np.random.default_rng(seed)
    data = ImageDataset(torch.from_numpy(rng.standard_normal((batch, ch, size, size)).astype(np.float32)),
                        torch.from_numpy(rng.integers(0, num_classes, batch)), num_classes, size)
    optim = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0}
    k = tokens_kept if meth in ("st-sflora", "tsflora") else None
    plan = ClientPlan(tokens_kept=k, bits=32 if bits is None else int(bits))
    if whole:
        role = FedLoRAClientRole(0, sm.client, sm.server, data, batch_size=batch, optim=optim, local_steps=2)
        role.begin_round(0, plan, None)
        for s in range(2):   # the second step sees the optimizer state
            role.local_step(0, s)
        return {"client": role.stats.memory, "server": None}
    client = ClientRole(0, sm.client, data, batch_size=batch, optim=optim, local_steps=2)
    server = ServerRole(sm.server, optim=optim, grad_bits=grad_bits)
    server.begin_round(0, None)
    client.begin_round(0, plan, None)
    for s in range(2):
        msg = client.forward(0, s)
        header, body = unframe(msg)
        client.backward(server.step(body, header))
    return {"client": client.stats.memory, "server": server.stats[0].memory}
