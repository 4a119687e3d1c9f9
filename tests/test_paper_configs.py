"""The papers' bundled configs: they validate, fail with one line naming what is missing, and a
ViT-B/16 split-LoRA round (random weights, a tiny ImageFolder on disk, bf16 autocast) runs on the
CPU with payload bits equal to the formula; the real model spec needs no payload rescaling."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.cli import main  # noqa: E402
from ste_opt.errors import InvalidScenarioError  # noqa: E402
from ste_opt.learning_hooks.config import list_configs, load_config  # noqa: E402
from ste_opt.learning_hooks.paper import PAPER_CONFIGS, missing_inputs  # noqa: E402
from ste_opt.payload import payload_bits  # noqa: E402


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_validate_and_name_what_is_missing(name, tmp_path, capsys):
    assert name in list_configs()
    cfg = load_config(name)
    assert cfg["federation"]["batch_size"] == 64 and cfg["data"]["image_size"] == 224
    keys = [k for k, _ in missing_inputs(cfg)]
    assert keys == ["data.root", "model.checkpoint"]
    assert main(["train", "--config", name, "--no-progress", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.root is not set" in err[0] and "model.checkpoint is not set" in err[0]
    cfg2 = load_config(name, [f"data.root={tmp_path / 'nope'}", f"model.checkpoint={tmp_path / 'w.safetensors'}"])
    msgs = " ".join(m for _, m in missing_inputs(cfg2))
    assert "nope does not exist" in msgs and "w.safetensors not found" in msgs


def test_paper_values():
    st, ts = load_config("stsflora_vitb16"), load_config("tsflora_vitb32")
    assert (st["model"]["arch"], st["model"]["cut_layer"], st["lora"]["rank"]) == ("vit_base_patch16_224", 6, 16)
    assert (st["federation"]["num_clients"], st["federation"]["clients_per_round"]) == (100, 10)
    assert not st["lora"]["client"]
    assert (ts["model"]["arch"], ts["lora"]["rank"], ts["optim"]["lr"]) == ("vit_base_patch32_224", 32, 0.1)
    assert (ts["federation"]["num_clients"], ts["federation"]["clients_per_round"],
            ts["federation"]["rounds"]) == (50, 10, 50)


def test_real_model_spec_runs_the_paper_scenario_unscaled():
    from ste_opt.learning_hooks.closed_loop.scaling import scenario_for_spec

    cfg = load_config("stsflora_vitb16")
    batch = int(cfg["federation"]["local_steps"]) * int(cfg["federation"]["batch_size"])
    scen = scenario_for_spec(10, n_patches=196, dim=768, batch=batch, bits=32)
    assert scen.meta["closed_loop"]["scale"] == pytest.approx(1.0)


def _image_folder(root, n_classes=2, per_class=2):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 1)):
        for c in range(n_classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_vit_b16_split_lora_round_bf16_on_cpu(tmp_path):
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    _image_folder(tmp_path / "data")
    with pytest.raises(InvalidScenarioError, match="model.checkpoint is not set"):
        SplitFedTrainer(load_config("stsflora_vitb16", [f"data.root={tmp_path / 'data'}"]),
                        run_dir=False)
    cfg = load_config("stsflora_vitb16", [
        f"data.root={tmp_path / 'data'}", "data.num_workers=0", "model.checkpoint=random",
        "federation.num_clients=2", "federation.clients_per_round=1", "federation.partition=iid",
        "federation.batch_size=2", "federation.local_steps=1", "federation.min_client_size=1",
        "eval.batch_size=2", "device=cpu", "amp=bf16", "compression.tokens_kept=64",
        "compression.bits=8"])
    tr = SplitFedTrainer(cfg, run_dir=False, progress=False)
    assert (tr.num_patches, tr.embed_dim) == (196, 768)
    assert tr.splits.train.transforms.source == "timm" and tr.splits.train.image_size == 224
    row = tr.run_round(0)
    crow = next(r for r in tr.client_rows if not r["excluded"])
    assert crow["uplink_bits"] == payload_bits(2, 64, 768, 8, extra_tokens=2) == crow["analytic_bits"]
    assert np.isfinite(row["train_loss"]) and 0 <= row["test_acc"] <= 1
