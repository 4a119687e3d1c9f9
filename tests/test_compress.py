"""Token compression: shapes, exact payload bits, gradients, round-trip error."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.errors import InvalidScenarioError  # noqa: E402
from ste_opt.learning_hooks import compress as C  # noqa: E402
from ste_opt.model.payload import payload_bits  # noqa: E402


def _tokens(b=4, n=16, d=24, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n + 1, d, generator=g)
    return x.requires_grad_(grad)


def test_select_and_merge_shapes_and_values():
    x = _tokens()
    s = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    for k in [0, 1, 7, 15, 16]:
        out, idx = C.select_and_merge(x, s, k, return_indices=True)
        assert out.shape == (4, k + 2, 24)
        assert torch.equal(out[:, 0], x[:, 0])  # CLS first
        top = s.argsort(dim=1, descending=True)[:, :k]
        assert torch.equal(idx, top)
        for b in range(4):
            assert torch.allclose(out[b, 1:k + 1], x[b, 1 + top[b]])
            drop = [i for i in range(16) if i not in set(top[b].tolist())]
            if drop:
                w = s[b, drop] / s[b, drop].sum()
                assert torch.allclose(out[b, -1], (w[:, None] * x[b, 1 + torch.tensor(drop)]).sum(0), atol=1e-6)
            else:
                assert torch.count_nonzero(out[b, -1]) == 0
    assert C.select_and_merge(x, s, None) is x
    with pytest.raises(InvalidScenarioError):
        C.select_and_merge(x, s, 17)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16])
def test_pack_unpack_roundtrip(bits):
    rng = np.random.default_rng(bits)
    for n in [1, 7, 64, 1001]:
        codes = rng.integers(0, 1 << bits, size=n)
        buf, nb = C.pack(codes, bits)
        assert nb == n * bits and buf.size == -(-nb // 8)
        assert np.array_equal(C.unpack(buf, bits, n), codes)
    with pytest.raises(InvalidScenarioError):
        C.pack(np.array([1 << bits]), bits)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8, 16])
def test_quantization_error_bounded_by_half_step(bits):
    x = _tokens(3, 20, 32, seed=bits) * 5
    x[0, 2] = 1.2345  # constant token
    codes, scale, offset = C.quantize(x, bits)
    assert codes.min() >= 0 and codes.max() <= (1 << bits) - 1
    assert scale.dtype == torch.float16 and offset.dtype == torch.float16
    deq = C.dequantize(codes, scale, offset)
    err = (deq - x).abs()
    bound = scale.float() / 2 + 1e-6 * x.abs().amax(-1, keepdim=True) + 1e-7
    assert torch.all(err <= bound)
    assert torch.all(offset.float() <= x.amin(-1, keepdim=True))


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize("k", [0, 5, 16])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 7, 8, 12, 16, 32])
def test_measured_bits_equal_formula(b, k, bits):
    x = _tokens(b, 16, 24, seed=k)
    s = torch.rand(b, 16)
    p, sent = C.compress_tokens(x, s, k, bits)
    assert p.shape == (b, k + 2, 24)
    assert p.nbits == payload_bits(b, k, 24, bits)
    q = C.Payload.from_bytes(p.to_bytes())
    assert q.nbits == p.nbits and len(q.body) * 8 - q.padding_bits == q.body_bits
    assert torch.equal(C.decode(q), sent.detach())  # server sees exactly what the client computed with


@pytest.mark.parametrize("bits", [4, 8, 32])
def test_no_selection_bits(bits):
    x = _tokens(2, 16, 24)
    p, _ = C.compress_tokens(x, None, None, bits)
    assert p.shape == (2, 17, 24)
    assert p.nbits == payload_bits(2, 16, 24, bits, extra_tokens=1)


def test_gradient_flows_through_quantizer_and_merge():
    x = _tokens(2, 16, 24, grad=True)
    s = torch.rand(2, 16)
    p, sent = C.compress_tokens(x, s, 6, 4)
    server_in = C.decode(p).requires_grad_(True)
    loss = (server_in ** 2).sum() + server_in[:, -1].sum()
    loss.backward()
    gp, _ = C.encode(server_in.grad, 32)
    sent.backward(C.decode(gp))
    g = x.grad
    assert g is not None and torch.isfinite(g).all()
    # every patch gets gradient: kept ones directly, dropped ones through the merged token
    assert torch.all(g.abs().sum(-1) > 0)
    # straight-through: the gradient at CLS equals the server's gradient at CLS
    assert torch.allclose(g[:, 0], server_in.grad[:, 0])


def test_fake_quantize_is_exact_and_straight_through():
    x = _tokens(2, 8, 16, grad=True)
    y = C.fake_quantize(x, 3)
    p, _ = C.encode(x, 3)
    assert torch.equal(y.detach(), C.decode(p))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert C.fake_quantize(x, 32) is x


def test_cls_attention_matches_explicit_softmax():
    from ste_opt.learning_hooks._compat import import_timm
    timm = import_timm()
    from timm.layers import Attention
    torch.manual_seed(0)
    attn = Attention(24, num_heads=3, qkv_bias=True).eval()
    x = torch.randn(2, 9, 24)
    a = C.cls_attention(attn, x)
    assert a.shape == (2, 8)
    qkv = attn.qkv(x).reshape(2, 9, 3, 3, 8).permute(2, 0, 3, 1, 4)
    full = ((qkv[0] @ qkv[1].transpose(-2, -1)) * 8 ** -0.5).softmax(-1).mean(1)
    assert torch.allclose(a, full[:, 0, 1:], atol=1e-6)
    assert torch.all(a.sum(-1) < 1)
    assert timm is not None


# --------------------------------------------------------------------------- the wire, uncopied
@pytest.mark.parametrize("bits", [2, 5, 8, 12, 16, 32])
def test_parts_frame_unframe_roundtrip_equals_to_bytes(bits):
    from ste_opt.learning_hooks.framing import frame, unframe

    x = _tokens(3, 10, 8, seed=bits)
    p, _ = C.encode(x, bits)
    assert b"".join(p.parts()) == p.to_bytes()
    msg = frame({"type": "activations", "labels": [1, 2, 3]}, p.parts())
    assert msg == frame({"type": "activations", "labels": [1, 2, 3]}, p.to_bytes())
    header, body = unframe(msg)
    assert header["labels"] == [1, 2, 3] and isinstance(body, memoryview) and body.readonly
    q = C.Payload.from_bytes(body)
    assert q == p and q.nbits == p.nbits
    assert torch.equal(C.decode(q), C.decode(C.Payload.from_bytes(p.to_bytes())))
    assert torch.equal(C.decode(q, device="cpu", dtype=torch.float64), C.decode(q).double())


def test_float32_payload_does_not_alias_the_tensor():
    x = _tokens(2, 5, 4).contiguous()
    p, _ = C.encode(x, 32)
    before = C.decode(p).clone()
    x.mul_(3.0)  # a later in-place write to the sender's tensor must not change what was sent
    assert torch.equal(C.decode(p), before)


@pytest.mark.parametrize("bits", [3, 8, 32])
def test_truncated_payloads_and_messages_are_refused(bits):
    from ste_opt.learning_hooks.framing import frame, unframe

    p, _ = C.encode(_tokens(2, 6, 8), bits)
    raw = p.to_bytes()
    for cut in (0, 3, 10, len(raw) - 1):
        with pytest.raises(InvalidScenarioError, match="payload"):
            C.decode(C.Payload.from_bytes(raw[:cut]))
    with pytest.raises(InvalidScenarioError, match="holds fewer"):  # header lies about the shape
        C.decode(C.Payload((2, 70, 8), p.bits, p.body, p.body_bits, p.side))
    msg = frame({"a": 1}, raw)
    for cut in (2, 6):
        with pytest.raises(InvalidScenarioError, match="message"):
            unframe(msg[:cut])
    with pytest.raises(InvalidScenarioError, match="header"):
        unframe(b"\x03\x00\x00\x00[1]")


def test_pack_narrows_tensor_codes_and_still_checks_their_range():
    codes = torch.tensor([0, 1, 2, 3, 255, 7], dtype=torch.int32)
    buf, n = C.pack(codes, 8)
    assert n == 48 and buf.tolist() == [0, 1, 2, 3, 255, 7]
    buf4, _ = C.pack(codes.clamp(max=15), 4)
    assert buf4.tolist() == C.pack(codes.clamp(max=15).numpy(), 4)[0].tolist()
    for bad in ([0, 256], [-1, 3]):
        with pytest.raises(InvalidScenarioError, match="outside"):
            C.pack(torch.tensor(bad, dtype=torch.int32), 8)


@pytest.mark.parametrize("bits", [4, 8, 32])
def test_decode_onto_another_device_reads_the_message_in_place(bits):
    # the branch a GPU takes (no host copy before the device copy), exercised on the meta device
    p, _ = C.encode(_tokens(2, 6, 8), bits)
    q = C.Payload.from_bytes(p.to_bytes())
    out = C.decode(q, dtype=torch.float16, device="meta")
    assert out.device.type == "meta" and out.shape == (2, 7, 8) and out.dtype == torch.float16
