"""TSFLora token compression at the split layer: small pure functions on tensors.

Pipeline on the client (per upload of B samples):

1. :func:`cls_attention` scores every patch by the [CLS] row of the last client block's attention,
   averaged over heads (computed explicitly: fused attention kernels do not expose it). Softmax over
   all keys, the CLS→CLS entry dropped (EViT convention). Treated as a constant (no gradient).
2. :func:`select_and_merge` keeps, per sample, [CLS] + the top-K patches and folds the other
   patches into one token, their attention-weighted mean (zeros when nothing is discarded).
   With ``tokens_kept=None`` nothing is selected: [CLS] + all N patches are sent.
3. :func:`quantize` maps each token to q-bit codes with an asymmetric min–max quantizer (round to
   nearest); scale and offset are stored as fp16 and the *fp16 values* are used to dequantize, so
   the server sees exactly what was sent. The offset is rounded down and the scale up to fp16, so
   every element lies in the code range and the round-trip error is at most half a step.
   :func:`fake_quantize` is the straight-through version used in the client's graph.
4. :func:`pack` bit-packs the codes (any q in 1..16; q = 32 sends raw float32).

:class:`Payload` holds the packed buffers; :attr:`Payload.bits` is measured from them and equals
``ste_opt.payload.payload_bits(B, K, D, q)`` exactly (``extra_tokens=1`` without selection).
The server's gradient w.r.t. the dequantized tokens travels back with :func:`encode` at the
downlink precision and flows through the straight-through quantizer and the merge into the client.
"""
from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidScenarioError
from ..model.payload import valid_bit_width

__all__ = [
    "cls_attention", "select_and_merge", "quantize", "dequantize", "fake_quantize", "pack", "unpack",
    "Payload", "encode", "decode", "compress_tokens", "FP16_MAX",
]

FP16_MAX = float(torch.finfo(torch.float16).max)


# --------------------------------------------------------------------------- scoring
@torch.no_grad()
def cls_attention(attn, x: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """[CLS]-to-patch attention of a timm ``Attention`` module, averaged over heads.

    Parameters
    ----------
    attn : timm.layers.Attention
        The attention module of the last client block (``qkv``, ``q_norm``, ``k_norm``,
        ``num_heads``, ``head_dim``, ``scale``); a peft-wrapped ``qkv`` works.
    x : Tensor, shape (B, T, D)
        The attention's input, i.e. ``block.norm1(tokens)``.
    num_prefix_tokens : int
        Tokens before the patches ([CLS] and register tokens); their columns are dropped.

    Returns
    -------
    Tensor, shape (B, T - num_prefix_tokens), float32, no gradient. Rows sum to at most 1
    (the CLS→prefix mass is dropped, not renormalised).
    """
    b, t, _ = x.shape
    qkv = attn.qkv(x).reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q[:, :, :1, :] * attn.scale) @ k.transpose(-2, -1)  # (B, H, 1, T)
    probs = logits.float().softmax(dim=-1).mean(dim=1)[:, 0, :]  # (B, T)
    return probs[:, num_prefix_tokens:].contiguous()


# --------------------------------------------------------------------------- selection
def select_and_merge(tokens: torch.Tensor, scores: torch.Tensor, tokens_kept: int | None,
                     num_prefix_tokens: int = 1, return_indices: bool = False):
    """Keep the top-K patches per sample and fold the rest into one attention-weighted token.

    Parameters
    ----------
    tokens : Tensor (B, P + N, D)
        Prefix tokens ([CLS], ...) followed by N patch tokens.
    scores : Tensor (B, N)
        Non-negative importance of every patch (e.g. :func:`cls_attention`); no gradient flows
        into it.
    tokens_kept : int or None
        K in [0, N]. ``None``: return ``tokens`` unchanged (no selection, no merged token).

    Returns
    -------
    Tensor (B, P + K + 1, D): prefix, the K kept patches (descending score), the merged token
    (zeros when K = N or when the discarded scores sum to zero, where it is the plain mean).
    With ``return_indices`` also the (B, K) kept patch indices.
    """
    if tokens_kept is None:
        return (tokens, None) if return_indices else tokens
    b, t, d = tokens.shape
    n = t - num_prefix_tokens
    k = int(tokens_kept)
    if not 0 <= k <= n:
        raise InvalidScenarioError(f"tokens_kept={k} outside [0, {n}]", field="tokens_kept")
    if scores.shape != (b, n):
        raise InvalidScenarioError(f"scores shape {tuple(scores.shape)} != {(b, n)}", field="scores")
    scores = scores.detach().to(tokens.dtype)
    prefix, patches = tokens[:, :num_prefix_tokens], tokens[:, num_prefix_tokens:]
    order = scores.argsort(dim=1, descending=True, stable=True)
    kept_idx, drop_idx = order[:, :k], order[:, k:]
    kept = patches.gather(1, kept_idx.unsqueeze(-1).expand(b, k, d))
    if k < n:
        dropped = patches.gather(1, drop_idx.unsqueeze(-1).expand(b, n - k, d))
        w = scores.gather(1, drop_idx)  # (B, N-K)
        total = w.sum(dim=1, keepdim=True)
        uniform = torch.full_like(w, 1.0 / (n - k))
        w = torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), uniform)
        merged = (w.unsqueeze(-1) * dropped).sum(dim=1, keepdim=True)
    else:
        merged = tokens.new_zeros(b, 1, d)
    out = torch.cat([prefix, kept, merged], dim=1)
    return (out, kept_idx) if return_indices else out


# --------------------------------------------------------------------------- quantization
def _check_bits(bits: int) -> int:
    bits = int(bits)
    if not valid_bit_width(bits):
        raise InvalidScenarioError(f"bits={bits} must be 1..16 or 32", field="bits")
    return bits


@torch.no_grad()
def quantize(x: torch.Tensor, bits: int):
    """Per-token asymmetric min–max quantization (last dim = one token), round to nearest.

    Returns
    -------
    codes : int32 Tensor, same shape as ``x``, in [0, 2^q - 1]
    scale, offset : float16 Tensors, shape ``x.shape[:-1] + (1,)``; ``x ≈ offset + codes·scale``.
    Values beyond ±65504 (fp16 range) are clamped.
    """
    bits = _check_bits(bits)
    if bits == 32:
        raise InvalidScenarioError("bits=32 is raw float32, not quantized", field="bits")
    xf = x.detach().float().clamp(-FP16_MAX, FP16_MAX)
    levels = (1 << bits) - 1
    lo = xf.amin(dim=-1, keepdim=True)
    hi = xf.amax(dim=-1, keepdim=True)
    offset = lo.half()
    down = offset.float() > lo
    offset = torch.where(down, torch.nextafter(offset, torch.full_like(offset, -FP16_MAX)), offset)
    step = (hi - offset.float()) / levels
    scale = step.half()
    up = scale.float() < step
    scale = torch.where(up, torch.nextafter(scale, torch.full_like(scale, FP16_MAX)), scale)
    s = scale.float()
    q = torch.where(s > 0, (xf - offset.float()) / torch.where(s > 0, s, torch.ones_like(s)),
                    torch.zeros_like(xf))
    codes = q.round().clamp_(0, levels).to(torch.int32)
    return codes, scale, offset


def dequantize(codes: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``offset + codes·scale`` computed in float32 from the fp16 side information."""
    return (offset.float() + codes.float() * scale.float()).to(dtype)


def fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize–dequantize with a straight-through gradient (identity in backward).

    The forward value equals what the server decodes from the payload, bit for bit.
    ``bits = 32`` returns ``x`` itself.
    """
    if _check_bits(bits) == 32:
        return x
    deq = dequantize(*quantize(x, bits), dtype=x.dtype)
    return deq + (x - x.detach())  # exact deq forward, identity backward


# --------------------------------------------------------------------------- bit packing
def pack(codes, bits: int) -> tuple[np.ndarray, int]:
    """Bit-pack non-negative integer codes, ``bits`` each, little-endian within the stream.

    Returns
    -------
    (buffer, n_bits): uint8 array of ``ceil(n_bits / 8)`` bytes and the exact number of
    meaningful bits ``n_codes · bits`` (the last byte is zero-padded).
    """
    bits = _check_bits(bits)
    if bits == 32:
        raise InvalidScenarioError("pack() takes integer codes; use encode() for float32", field="bits")
    if isinstance(codes, torch.Tensor):
        codes = codes.detach()
        if bits <= 8 and not codes.is_floating_point() and codes.dtype != torch.uint8:
            # one byte per code before the device-to-host copy (codes in range are unchanged;
            # out-of-range ones are caught below on the int32 minimum/maximum first)
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= (1 << bits)):
                raise InvalidScenarioError(f"codes outside [0, 2^{bits})", field="codes")
            codes = codes.to(torch.uint8)
        c = codes.cpu().numpy()
    else:
        c = np.asarray(codes)
    c = c.reshape(-1)
    n_bits = c.size * bits
    if c.size and (c.min() < 0 or c.max() >= (1 << bits)):
        raise InvalidScenarioError(f"codes outside [0, 2^{bits})", field="codes")
    if bits == 8:
        return c.astype(np.uint8, copy=False), n_bits
    if bits == 16:
        return c.astype("<u2", copy=False).view(np.uint8), n_bits
    if 8 % bits == 0:  # 1, 2, 4: several codes per byte
        per = 8 // bits
        pad = (-c.size) % per
        cc = np.concatenate([c.astype(np.uint8), np.zeros(pad, np.uint8)]).reshape(-1, per)
        shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
        return np.bitwise_or.reduce(cc << shifts, axis=1).astype(np.uint8), n_bits
    bitplanes = ((c.astype(np.uint32)[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bitplanes.reshape(-1), bitorder="little"), n_bits


def unpack(buffer, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack`: the first ``count`` codes as int64."""
    bits = _check_bits(bits)
    buf = buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, dtype=np.uint8)
    if buf.size * 8 < count * bits:
        raise InvalidScenarioError(f"buffer of {buf.size} bytes holds fewer than {count} {bits}-bit codes",
                                   field="buffer")
    if bits == 8:
        return buf[:count].astype(np.int64)
    if bits == 16:
        return buf[: 2 * count].view("<u2").astype(np.int64)
    if 8 % bits == 0:
        per = 8 // bits
        shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
        vals = (buf[:, None] >> shifts) & ((1 << bits) - 1)
        return vals.reshape(-1)[:count].astype(np.int64)
    planes = np.unpackbits(buf, count=count * bits, bitorder="little").reshape(count, bits)
    return planes.astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))


# --------------------------------------------------------------------------- payload
def _byte_view(buf) -> memoryview:
    """A flat unsigned-byte view of any contiguous buffer (``len`` = bytes), without a copy."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


@dataclass
class Payload:
    """One compressed tensor on the wire.

    Attributes
    ----------
    shape : tuple (B, T, D)
    bits : int, q (1..16 packed codes, 32 raw float32)
    body : bytes-like, packed codes (or little-endian float32 values); ``len(body)`` is in bytes.
        :func:`encode` and :meth:`from_bytes` keep it as a read-only byte view of a buffer the
        payload owns, so building and parsing a message copies the bulk once, not at every layer.
    body_bits : int, meaningful bits in ``body`` (``8·len(body)`` minus the final padding)
    side : bytes-like, fp16 (scale, offset) per token when q < 32, else empty
    """

    shape: tuple
    bits: int
    body: bytes | memoryview
    body_bits: int
    side: bytes | memoryview = b""

    @property
    def nbits(self) -> int:
        """Bits on the wire, measured from the buffers: packed body + side information."""
        return int(self.body_bits) + 8 * len(self.side)

    @property
    def padding_bits(self) -> int:
        return 8 * len(self.body) - int(self.body_bits)

    def parts(self) -> list:
        """The serialisation as buffers (a small JSON header, then body, then side), uncopied:
        ``b"".join(parts)`` is :meth:`to_bytes`; :func:`~ste_opt.learning_hooks.framing.frame`
        takes the list as a message body and copies each buffer once, into the message."""
        head = json.dumps({"shape": list(self.shape), "bits": self.bits, "body_bits": self.body_bits,
                           "body_len": len(self.body), "side_len": len(self.side)}).encode()
        return [struct.pack("<I", len(head)), head, self.body, self.side]

    def to_bytes(self) -> bytes:
        """Self-describing serialisation (a small JSON header, then body, then side)."""
        return b"".join(self.parts())

    @classmethod
    def from_bytes(cls, data) -> Payload:
        """Parse :meth:`to_bytes`'s format from any bytes-like object. ``body`` and ``side`` are
        views into ``data`` (no copy); a buffer shorter than its header says is refused."""
        mv = _byte_view(data)
        if len(mv) < 4:
            raise InvalidScenarioError("payload shorter than its length prefix", field="payload")
        (hl,) = struct.unpack_from("<I", mv, 0)
        try:
            head = json.loads(bytes(mv[4:4 + hl]).decode())
            shape = tuple(int(d) for d in head["shape"])
            bits, body_bits = int(head["bits"]), int(head["body_bits"])
            body_len, side_len = int(head["body_len"]), int(head["side_len"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidScenarioError(f"unreadable payload header: {exc}", field="payload") from exc
        o = 4 + hl
        if min(body_len, side_len, body_bits) < 0 or len(mv) < o + body_len + side_len:
            raise InvalidScenarioError(f"payload of {len(mv)} bytes is shorter than its header says "
                                       f"({o} + {body_len} + {side_len})", field="payload")
        return cls(shape, bits, mv[o:o + body_len].toreadonly(), body_bits,
                   mv[o + body_len:o + body_len + side_len].toreadonly())


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of ``t``; from a GPU through page-locked memory (the allocator caches
    those blocks, so a training loop's same-sized messages reuse them)."""
    if t.device.type == "cuda":
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t)
        return host
    return t.to(device="cpu", copy=True).contiguous()


def _readonly_tensor(arr: np.ndarray) -> torch.Tensor:
    """A tensor over a read-only array (a received message), for a copy to another device only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def encode(x: torch.Tensor, bits: int) -> tuple[Payload, torch.Tensor]:
    """Compress a (B, T, D) tensor into a :class:`Payload`.

    Returns the payload and the tensor the receiver will decode, with a straight-through gradient
    to ``x`` (so ``decoded.backward(grad)`` reaches ``x`` unchanged). On a GPU the codes are
    narrowed to one byte (q ≤ 8) before the device-to-host copy.
    """
    bits = _check_bits(bits)
    shape = tuple(int(s) for s in x.shape)
    if bits == 32:
        host = _host_copy(x.detach().float())
        arr = host.numpy().astype("<f4", copy=False)  # a copy of x: later writes to x do not reach it
        body = _byte_view(arr).toreadonly()
        return Payload(shape, 32, body, 8 * len(body)), x
    codes, scale, offset = quantize(x, bits)
    buf, n_bits = pack(codes, bits)
    side = torch.cat([scale, offset], dim=-1).cpu().numpy().astype("<f2").tobytes()
    deq = dequantize(codes, scale, offset, dtype=x.dtype)
    return Payload(shape, bits, _byte_view(buf).toreadonly(), n_bits, side), deq + (x - x.detach())


def decode(payload: Payload, dtype: torch.dtype = torch.float32,
           device: torch.device | str | None = None) -> torch.Tensor:
    """Rebuild the tensor from a :class:`Payload` (what the receiver computes on).

    ``device``: where to build it (default the CPU). Codes of q ≤ 8 bits travel to the device as
    bytes and are dequantized there.
    """
    shape = tuple(payload.shape)
    count = int(np.prod(shape))
    bits = _check_bits(payload.bits)
    need = 4 * count if bits == 32 else (count * bits + 7) // 8
    if len(payload.body) < need:
        raise InvalidScenarioError(f"payload body of {len(payload.body)} bytes holds fewer than "
                                   f"{count} values of {bits} bits", field="payload")
    away = device is not None and torch.device(device).type != "cpu"   # (then .to copies)
    if bits == 32:
        arr = np.frombuffer(payload.body, dtype="<f4", count=count).reshape(shape)
        if away:
            return _readonly_tensor(arr).to(device=device, dtype=dtype)
        out = torch.from_numpy(arr.astype(np.float32))  # a writable copy of the received bytes
        return out.to(dtype)
    if len(payload.side) < 4 * count // max(shape[-1], 1):
        raise InvalidScenarioError(f"payload side information of {len(payload.side)} bytes is too "
                                   f"short for shape {shape}", field="payload")
    if bits == 8:
        raw = np.frombuffer(payload.body, dtype=np.uint8, count=count)
        codes = _readonly_tensor(raw).to(device) if away else torch.from_numpy(raw.copy())
    else:
        codes = torch.from_numpy(unpack(payload.body, bits, count))
    side = np.frombuffer(payload.side, dtype="<f2", count=2 * (count // max(shape[-1], 1)))
    side_t = torch.from_numpy(side.reshape(shape[:-1] + (2,)).copy())
    if device is not None:
        codes, side_t = codes.to(device), side_t.to(device)
    return dequantize(codes.reshape(shape), side_t[..., :1], side_t[..., 1:], dtype=dtype)


def compress_tokens(tokens: torch.Tensor, scores: torch.Tensor | None, tokens_kept: int | None,
                    bits: int, num_prefix_tokens: int = 1) -> tuple[Payload, torch.Tensor]:
    """Select + merge + quantize + pack in one call (the client's upload step).

    Returns the payload and the client-side tensor that matches the decoded payload exactly and
    carries the gradient back through the quantizer and the merge.
    """
    if tokens_kept is not None and scores is None:
        raise InvalidScenarioError("selection needs attention scores", field="scores")
    sent = select_and_merge(tokens, scores, tokens_kept, num_prefix_tokens)
    return encode(sent, bits)
