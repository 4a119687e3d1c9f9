"""Split of timm ViTs into client/server modules with peft LoRA."""
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.errors import InvalidScenarioError  # noqa: E402
from ste_opt.learning_hooks.split import (  # noqa: E402
    build_vit,
    load_pretrained,
    load_trainable_state,
    split_vit,
    trainable_state,
)

SMALL = dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)


def test_split_reproduces_unsplit_features():
    torch.manual_seed(0)
    vit = build_vit(num_classes=5, **SMALL).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = vit.forward_features(x)
    for cut in [1, 2, 4]:
        sm = split_vit(vit, cut, 5, client_lora=True)
        sm.client.eval()
        sm.server.eval()
        with torch.no_grad():
            tok, scores = sm.client(x)
            out = sm.server.norm(sm.server.blocks(tok))
        assert tok.shape == (3, 17, 32) and scores.shape == (3, 16)
        assert torch.allclose(out, ref, atol=1e-5)  # LoRA B starts at zero
        assert len(sm.client.blocks) == cut and len(sm.server.blocks) == 4 - cut
        logits = sm.server(tok)
        assert logits.shape == (3, 5)


def test_frozen_backbone_and_lora_targets():
    vit = build_vit(num_classes=5, **SMALL)
    sm = split_vit(vit, 2, 7, lora_rank=4, lora_targets=("qkv", "proj"), client_lora=False)
    ctrain = [n for n, p in sm.client.named_parameters() if p.requires_grad]
    strain = [n for n, p in sm.server.named_parameters() if p.requires_grad]
    assert ctrain == []
    assert all(("lora_" in n) or n.startswith("head.") for n in strain)
    assert sum("attn.qkv.lora_A" in n for n in strain) == 2
    assert sum("attn.proj.lora_B" in n for n in strain) == 2
    assert sm.server.head.out_features == 7
    assert not any("patch_embed" in n for n in strain)
    # gradients reach server LoRA and head only
    tok, _ = sm.client(torch.randn(2, 3, 16, 16))
    sm.server(tok).sum().backward()
    for n, p in sm.server.named_parameters():
        assert (p.grad is not None) == p.requires_grad, n


def test_client_lora_receives_gradient():
    vit = build_vit(num_classes=5, **SMALL)
    sm = split_vit(vit, 2, 5, client_lora=True, lora_rank=2)
    tok, _ = sm.client(torch.randn(2, 3, 16, 16))
    # B of LoRA is zero at init, so A gets no gradient yet; B must
    sm.server(tok).sum().backward()
    grads = {n: p.grad for n, p in sm.client.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    assert any(float(g.abs().sum()) > 0 for n, g in grads.items() if "lora_B" in n)


def test_trainable_state_roundtrip_no_aliasing():
    sm = split_vit(build_vit(num_classes=3, **SMALL), 2, 3)
    st = trainable_state(sm.server)
    st2 = {k: v + 1 for k, v in st.items()}
    load_trainable_state(sm.server, st2)
    now = trainable_state(sm.server)
    assert all(torch.equal(now[k], st2[k]) for k in st)
    st2[next(iter(st2))].zero_()
    assert not torch.equal(trainable_state(sm.server)[next(iter(st2))], st2[next(iter(st2))])
    with pytest.raises(InvalidScenarioError):
        load_trainable_state(sm.server, {"nope": torch.zeros(1)})


def test_pretrained_from_local_files(tmp_path):
    torch.manual_seed(1)
    a = build_vit(num_classes=4, **SMALL)
    pt = tmp_path / "w.pt"
    torch.save({"model": a.state_dict()}, pt)
    from safetensors.torch import save_file
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(st))
    for path in (pt, st):
        b = build_vit(num_classes=9, checkpoint=path, **SMALL)  # other head: skipped
        assert torch.equal(b.blocks[1].attn.qkv.weight, a.blocks[1].attn.qkv.weight)
        assert b.head.out_features == 9
    with pytest.raises(InvalidScenarioError, match="not found"):
        load_pretrained(a, tmp_path / "missing.pt")
    torch.save({"model": {"blocks.0.norm1.weight": torch.ones(32)}}, tmp_path / "bad.pt")
    with pytest.raises(InvalidScenarioError, match="lacks"):
        load_pretrained(a, tmp_path / "bad.pt")


@pytest.mark.parametrize("name", ["vit_small_patch32_224", "vit_base_patch16_224"])
def test_paper_models_by_name_split(name):
    vit = build_vit(name, num_classes=10)
    sm = split_vit(vit, 6, 10, client_lora=True, lora_rank=4)
    n = 49 if "patch32" in name else 196
    assert sm.num_patches == n
    assert sm.embed_dim == (384 if "small" in name else 768)
    assert len(sm.client.blocks) == 6 and len(sm.server.blocks) == 6


def test_bad_cut_and_targets():
    vit = build_vit(num_classes=3, **SMALL)
    with pytest.raises(InvalidScenarioError):
        split_vit(vit, 0, 3)
    with pytest.raises(InvalidScenarioError):
        split_vit(build_vit(num_classes=3, **SMALL), 2, 3, lora_targets=("fc1",))
    with pytest.raises(InvalidScenarioError):
        build_vit("resnet18", num_classes=3)
