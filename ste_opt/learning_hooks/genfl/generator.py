"""Built-in class-conditional generator: flow matching (rectified flow) with a small conv UNet.

Objective (conditional flow matching, rectified-flow path)::

    x_t = (1 - t) * noise + t * x,     v_target = x - noise,     t ~ logit-normal(0, 1)
    loss = || v_theta(x_t, t, y) - v_target ||^2

with the label replaced by a *null class* (id ``num_classes``) with probability
``label_dropout`` so that classifier-free guidance (CFG) is available at sampling time.
Sampling integrates ``dx/dt = v`` from t = 0 (Gaussian noise) to t = 1 with a deterministic
Euler scheme; CFG uses ``v = v_cond + w * (v_cond - v_null)`` (``w = 0``: no guidance, the best
diversity: docs/genfl.md).

Training stops after a fixed number of optimiser steps (reproducible); an optional CPU-time cap
is a convenience and the steps actually reached are recorded. The exponential moving average (EMA)
of the weights is what is kept, saved and sampled from. Images are float tensors in [-1, 1],
shape ``(N, C, H, W)``; H and W must be divisible by ``2 ** levels``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import InvalidScenarioError, SolverError
from .unet import UNet, default_levels

__all__ = ["GeneratorConfig", "UNet", "FlowMatchingGenerator", "train_flow_matching",
           "euler_sample", "FORMAT"]

FORMAT = "ste_opt.genfl.flow_matching/1"


@dataclass
class GeneratorConfig:
    """Hyper-parameters of the built-in generator (defaults: the measured digits prototype, except
    ``train_steps``: 600 rather than 2000, because the server split is small (300 digits) and
    longer training memorises it; measured in ``docs/genfl.md``).

    Attributes
    ----------
    ch : int
        Base channel count of the UNet (32 gives ~0.5 M parameters at 8x8).
    edim : int
        Width of the time + class embedding.
    levels : int or None
        Number of 2x downsamplings; ``None`` picks 1 for images <= 8 px, else 2.
    train_steps : int
        Optimiser steps (the stopping rule).
    batch_size : int
        Images per step.
    lr : float
        AdamW peak learning rate (linear warm-up over ``warmup_steps``).
    warmup_steps : int
        Linear learning-rate warm-up length in steps.
    ema_decay : float
        EMA decay of the kept weights (with the usual ``(1+s)/(10+s)`` warm-up).
    label_dropout : float
        Probability of replacing the label by the null class during training (enables CFG).
    grad_clip : float
        Max global gradient norm.
    sample_steps : int
        Default Euler steps at sampling time.
    cfg_scale : float
        Default classifier-free guidance weight ``w`` (0 = none).
    seed : int
        Seeds the initialisation and every training draw (batches, t, noise, label dropout).
    max_cpu_seconds : float or None
        Optional cap on process CPU time; training stops early and records the steps reached.
    """

    ch: int = 32
    edim: int = 128
    levels: int | None = None
    train_steps: int = 600
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    grad_clip: float = 1.0
    sample_steps: int = 16
    cfg_scale: float = 0.0
    seed: int = 0
    max_cpu_seconds: float | None = None

    def validate(self) -> None:
        for name in ("ch", "edim", "train_steps", "batch_size", "sample_steps"):
            if int(getattr(self, name)) < 1:
                raise InvalidScenarioError(f"generator.{name} must be >= 1", field=name)
        if not 0.0 <= self.label_dropout < 1.0:
            raise InvalidScenarioError("generator.label_dropout must be in [0, 1)", field="label_dropout")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidScenarioError("generator.ema_decay must be in [0, 1)", field="ema_decay")
        if self.lr <= 0:
            raise InvalidScenarioError("generator.lr must be > 0", field="lr")


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def euler_sample(model: UNet, labels: torch.Tensor, image_shape: tuple[int, int, int], *,
                 steps: int = 16, cfg_scale: float = 0.0, seed: int = 0,
                 batch_size: int = 1000) -> torch.Tensor:
    """Deterministic Euler integration of the learned flow from noise (t=0) to data (t=1).

    Parameters
    ----------
    model : UNet
        The velocity network (EMA weights).
    labels : torch.Tensor
        Class ids, shape ``(n,)``.
    image_shape : tuple
        ``(C, H, W)``.
    steps : int
        Euler steps (network evaluations; twice as many with CFG).
    cfg_scale : float
        Guidance weight ``w``; ``v = v_c + w (v_c - v_null)``.
    seed : int
        Seeds the initial noise (a dedicated ``torch.Generator``): same seed, same samples.
    batch_size : int
        Images per forward pass (memory only; does not change the result).

    Returns
    -------
    torch.Tensor
        ``(n, C, H, W)`` float32, clamped to [-1, 1].
    """
    if steps < 1:
        raise InvalidScenarioError("sample steps must be >= 1", field="sample_steps")
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    n = labels.numel()
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((n, *image_shape), generator=gen)
    was_training = model.training
    model.eval()
    out = []
    null_id = model.num_classes
    for lo in range(0, n, batch_size):
        x = noise[lo:lo + batch_size].clone()
        y = labels[lo:lo + batch_size]
        b = y.numel()
        for i in range(steps):
            t = torch.full((b,), i / steps)
            if cfg_scale:
                v2 = model(torch.cat([x, x]), torch.cat([t, t]),
                           torch.cat([y, torch.full_like(y, null_id)]))
                v_c, v_u = v2[:b], v2[b:]
                v = v_c + cfg_scale * (v_c - v_u)
            else:
                v = model(x, t, y)
            x = x + v / steps
        out.append(x.clamp_(-1.0, 1.0))
    model.train(was_training)
    if not out:
        return torch.empty((0, *image_shape))
    return torch.cat(out)


# --------------------------------------------------------------------------- training

@dataclass
class TrainInfo:
    """What a generator training run did (times in seconds)."""

    steps: int
    wall_seconds: float
    cpu_seconds: float
    loss_first: float
    loss_last: float
    num_parameters: int
    losses: list[float] = field(default_factory=list, repr=False)


def _as_images(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim != 4:
        raise InvalidScenarioError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}",
                                   field="images")
    return x


def train_flow_matching(images, labels, num_classes: int,
                        config: GeneratorConfig | None = None) -> tuple[UNet, TrainInfo]:
    """Train the conditional flow-matching UNet; returns the EMA model and a :class:`TrainInfo`.

    Parameters
    ----------
    images : array-like
        ``(N, C, H, W)`` float in [-1, 1] (server-held data only).
    labels : array-like
        ``(N,)`` int class ids in ``[0, num_classes)``.
    num_classes : int
        Number of classes (the null class gets id ``num_classes``).
    config : GeneratorConfig
        Hyper-parameters; defaults to :class:`GeneratorConfig()`.
    """
    cfg = config or GeneratorConfig()
    cfg.validate()
    x_all = _as_images(images)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if y_all.numel() != x_all.shape[0] or x_all.shape[0] == 0:
        raise InvalidScenarioError("images and labels must be non-empty and the same length",
                                   field="labels")
    if int(y_all.min()) < 0 or int(y_all.max()) >= num_classes:
        raise InvalidScenarioError(f"labels must lie in [0, {num_classes})", field="labels")
    c, h, w = x_all.shape[1:]
    levels = cfg.levels if cfg.levels is not None else default_levels(min(h, w))
    if h % (2 ** levels) or w % (2 ** levels):
        raise InvalidScenarioError(f"image size {h}x{w} not divisible by 2**{levels}", field="levels")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = UNet(c, num_classes, cfg.ch, cfg.edim, levels)
    ema = UNet(c, num_classes, cfg.ch, cfg.edim, levels)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = x_all.shape[0]
    losses: list[float] = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    step = 0
    model.train()
    for step in range(1, cfg.train_steps + 1):
        lr = cfg.lr * min(1.0, step / max(1, cfg.warmup_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(n, (cfg.batch_size,), generator=gen)
        x1, y = x_all[idx], y_all[idx]
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.label_dropout
        y = torch.where(drop, torch.full_like(y, num_classes), y)
        t = torch.sigmoid(torch.randn(cfg.batch_size, generator=gen))
        x0 = torch.randn(x1.shape, generator=gen)
        tt = t[:, None, None, None]
        xt = (1 - tt) * x0 + tt * x1
        loss = F.mse_loss(model(xt, t, y), x1 - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        losses.append(float(loss.detach()))
        if cfg.max_cpu_seconds is not None and time.process_time() - cpu0 >= cfg.max_cpu_seconds:
            break
    ema.eval()
    k = max(1, min(10, len(losses) // 2))
    info = TrainInfo(steps=step, wall_seconds=time.perf_counter() - wall0,
                     cpu_seconds=time.process_time() - cpu0,
                     loss_first=float(np.mean(losses[:k])), loss_last=float(np.mean(losses[-k:])),
                     num_parameters=sum(p.numel() for p in ema.parameters()), losses=losses)
    return ema, info


# --------------------------------------------------------------------------- wrapper

class FlowMatchingGenerator:
    """A trained built-in generator: EMA UNet + config + image shape; sample, save, load.

    Build one with :meth:`train` or :meth:`load`.
    """

    def __init__(self, model: UNet, config: GeneratorConfig, image_shape: tuple[int, int, int],
                 num_classes: int, info: dict | None = None):
        self.model = model
        self.config = config
        self.image_shape = tuple(int(v) for v in image_shape)
        self.num_classes = int(num_classes)
        self.info = dict(info or {})

    @classmethod
    def train(cls, images, labels, num_classes: int,
              config: GeneratorConfig | None = None) -> FlowMatchingGenerator:
        """Train on ``images`` (N, C, H, W) in [-1, 1] and ``labels``; see :func:`train_flow_matching`."""
        cfg = config or GeneratorConfig()
        model, info = train_flow_matching(images, labels, num_classes, cfg)
        meta = {k: v for k, v in asdict(info).items() if k != "losses"}
        meta["num_train_images"] = int(np.asarray(labels).size)
        return cls(model, cfg, tuple(np.asarray(images).shape[1:]), num_classes, meta)

    def sample(self, labels, seed: int = 0, steps: int | None = None,
               cfg_scale: float | None = None) -> np.ndarray:
        """Generate one image per label; ``(n, C, H, W)`` float32 in [-1, 1]. Same seed, same images."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise InvalidScenarioError(f"labels must lie in [0, {self.num_classes})", field="labels")
        out = euler_sample(self.model, torch.from_numpy(labels), self.image_shape,
                           steps=int(steps or self.config.sample_steps),
                           cfg_scale=float(self.config.cfg_scale if cfg_scale is None else cfg_scale),
                           seed=seed)
        return out.numpy().astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the EMA state dict, config and metadata with ``torch.save`` (weights-only loadable)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "config": asdict(self.config),
                   "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                   "info": {k: v for k, v in self.info.items()
                            if isinstance(v, (int, float, str, bool)) or v is None},
                   "state_dict": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FlowMatchingGenerator:
        """Load a file written by :meth:`save` (``torch.load(weights_only=True)``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no generator file at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise SolverError(f"cannot load generator file {path}: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise SolverError(f"{path} is not a ste-opt flow-matching generator file")
        cfg = GeneratorConfig(**payload["config"])
        shape = tuple(payload["image_shape"])
        levels = cfg.levels if cfg.levels is not None else default_levels(min(shape[1:]))
        model = UNet(shape[0], payload["num_classes"], cfg.ch, cfg.edim, levels)
        model.load_state_dict(payload["state_dict"])
        model.eval()
        return cls(model, cfg, shape, payload["num_classes"], payload.get("info"))
