"""The built-in generator's network: a small class-conditional conv UNet with FiLM conditioning on
a time embedding plus a class embedding (a null class for classifier-free guidance)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["timestep_embedding", "ResBlock", "UNet", "default_levels"]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of ``t`` in [0, 1] (scaled by 1000), shape ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _groups(c: int) -> int:
    for g in (8, 4, 2, 1):
        if c % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with FiLM conditioning on the embedding."""

    def __init__(self, cin: int, cout: int, edim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(edim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class UNet(nn.Module):
    """Small conditional UNet: ``levels`` downsamplings; level ``l`` has ``ch * min(2**l, 4)`` channels.

    Layout for one level (the 8x8 digits case)::

        in conv -> Res(c) -> down -> Res(2c) -> mid Res(2c) x2 -> cat -> Res(2c) -> up
                -> cat -> Res(c) -> GN/SiLU/conv out (zero-initialised)

    The class embedding has ``num_classes + 1`` rows; the last one is the null class used by CFG.
    """

    def __init__(self, in_channels: int, num_classes: int, ch: int = 32, edim: int = 128,
                 levels: int = 1):
        super().__init__()
        self.num_classes = int(num_classes)
        self.levels = int(levels)
        self.time_mlp = nn.Sequential(nn.Linear(edim, edim), nn.SiLU(), nn.Linear(edim, edim))
        self.class_emb = nn.Embedding(num_classes + 1, edim)
        self.edim = edim
        widths = [ch * min(2 ** i, 4) for i in range(levels + 1)]
        self.inp = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = ch
        for i in range(levels):
            self.enc.append(ResBlock(cin, widths[i], edim))
            self.down.append(nn.Conv2d(widths[i], widths[i], 3, stride=2, padding=1))
            cin = widths[i]
        self.bottom = ResBlock(cin, widths[levels], edim)
        self.mid = nn.ModuleList([ResBlock(widths[levels], widths[levels], edim) for _ in range(2)])
        self.dec_bottom = ResBlock(2 * widths[levels], widths[levels], edim)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cur = widths[levels]
        for i in reversed(range(levels)):
            self.up.append(nn.Conv2d(cur, widths[i], 3, padding=1))
            self.dec.append(ResBlock(2 * widths[i], widths[i], edim))
            cur = widths[i]
        self.out_norm = nn.GroupNorm(_groups(cur), cur)
        self.out = nn.Conv2d(cur, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.edim)) + self.class_emb(y)
        h = self.inp(x)
        skips = []
        for block, down in zip(self.enc, self.down, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.bottom(h, emb)
        bottom_skip = h
        for block in self.mid:
            h = block(h, emb)
        h = self.dec_bottom(torch.cat([h, bottom_skip], dim=1), emb)
        for up, block in zip(self.up, self.dec, strict=True):
            skip = skips.pop()
            h = up(F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))


def default_levels(image_size: int) -> int:
    return 1 if image_size <= 8 else 2
