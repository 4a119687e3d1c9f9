"""Data on disk: restricted unpickler (a malicious CIFAR pickle executes nothing), CIFAR-10/100,
Tiny-ImageNet and ImageFolder from tiny fake archives in the real formats, the DataLoader view
pipeline (seeded augmentation, workers), and error messages naming the file expected."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from fake_archives import write_tiny_imagenet

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.errors import InvalidScenarioError  # noqa: E402
from ste_opt.learning_hooks.data import load_cifar, load_splits  # noqa: E402
from ste_opt.learning_hooks.datasets import (  # noqa: E402
    DiskImageDataset,
    load_disk_dataset,
    restricted_loads,
    scan_image_folder,
)


def _cifar_batch(n, k, label_key, seed, protocol=2):
    rng = np.random.default_rng(seed)
    d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         label_key.encode(): rng.integers(0, k, n).tolist(), b"batch_label": b"fake",
         b"filenames": [b"a.png"] * n}
    return pickle.dumps(d, protocol=protocol)


def _write_cifar_tgz(root, which=10, member_bytes=None, n=4):
    folder = "cifar-10-batches-py" if which == 10 else "cifar-100-python"
    names = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]) if which == 10 else ["train", "test"]
    key = "labels" if which == 10 else "fine_labels"
    tgz = root / ("cifar-10-python.tar.gz" if which == 10 else "cifar-100-python.tar.gz")
    with tarfile.open(tgz, "w:gz") as tf:
        for i, name in enumerate(names):
            data = member_bytes if (member_bytes is not None and i == 0) else _cifar_batch(n, which, key, i, 2 + i % 4)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return tgz


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_reads_arrays_refuses_code(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for proto in (2, 4, 5):
        out = restricted_loads(pickle.dumps({b"data": arr, b"labels": [1, 2, 3], "s": "x"}, protocol=proto))
        assert np.array_equal(out[b"data"], arr) and out[b"labels"] == [1, 2, 3]
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        restricted_loads(pickle.dumps({b"data": _Evil(marker)}))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(pickle.dumps(np.array([object()], dtype=object)))


def test_malicious_cifar_archive_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    _write_cifar_tgz(tmp_path, 10, member_bytes=evil)
    for load in (lambda: load_cifar(tmp_path, 10),
                 lambda: load_splits("cifar10", root=tmp_path, source_fraction=0.0)):
        with pytest.raises(InvalidScenarioError, match="forbidden global"):
            load()
    assert not marker.exists()


@pytest.mark.parametrize("which", [10, 100])
def test_cifar_tgz_on_disk_views(tmp_path, which):
    _write_cifar_tgz(tmp_path, which)
    train, test = load_disk_dataset(f"cifar{which}", tmp_path, image_size=16)
    n_train = 20 if which == 10 else 4
    assert isinstance(train, DiskImageDataset) and len(train) == n_train and len(test) == 4
    assert train.num_classes == which and int(train.labels.max()) < which
    x, y = test.batch([0, 1])
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32 and -1 <= float(x.min())
    # same pixels as the in-memory reader (resize of the same uint8 image)
    mem_train, _ = load_cifar(tmp_path, which, image_size=32)
    t32, _ = load_disk_dataset(f"cifar{which}", tmp_path, image_size=32)
    assert torch.allclose(t32.batch([0, 3])[0], mem_train.batch([0, 3])[0], atol=1e-6)
    s = load_splits(f"cifar{which}", root=tmp_path, source_fraction=0.5, image_size=16)
    assert len(s.source) + len(s.train) == n_train
    sub = s.train.subset([0, 1])  # a view: shares the arrays, copies nothing
    assert sub._arrays is s.train._arrays and len(sub) == 2


def test_dataloader_views_seeded_augmentation_and_workers(tmp_path):
    _write_cifar_tgz(tmp_path, 10, n=6)
    train, _ = load_disk_dataset("cifar10", tmp_path, image_size=16)
    aug = train.subset(np.arange(len(train)), train=True)
    batches = [[0, 1, 2], [3, 4, 5]]

    def run(view, workers, seed_base):
        return [x for x, _ in view.loader(batches, seed_base=seed_base, num_workers=workers)]
    a = run(aug, 0, [0, 1, 2])
    assert torch.equal(torch.cat(a), torch.cat(run(aug, 0, [0, 1, 2])))      # seeded
    assert torch.equal(torch.cat(a), torch.cat(run(aug, 1, [0, 1, 2])))      # same with a worker
    assert not torch.equal(torch.cat(a), torch.cat(run(aug, 0, [0, 2, 2])))  # another round differs
    plain = run(train, 0, [0, 1, 2])
    assert not torch.equal(torch.cat(a), torch.cat(plain))                   # augmentation happened
    assert torch.equal(plain[0], train.batch([0, 1, 2])[0])                  # eval = batch()


def _write_tiny(root, wnids=("n01", "n02"), per_class=2):
    return write_tiny_imagenet(root, wnids, per_class)


def test_tiny_imagenet_on_disk(tmp_path):
    _write_tiny(tmp_path)
    s = load_splits("tiny_imagenet", root=tmp_path, image_size=32, source_fraction=0.0)
    assert len(s.train) == 4 and len(s.test) == 2 and s.train.num_classes == 2
    x, y = s.test.batch([0, 1])
    assert x.shape == (2, 3, 32, 32) and sorted(y.tolist()) == [0, 1]
    with pytest.raises(InvalidScenarioError, match="wnids.txt"):
        load_splits("tiny_imagenet", root=tmp_path / "tiny-imagenet-200" / "train")


def _write_image_folder(root, classes=("cat", "dog"), per_class=2, size=20):
    from PIL import Image
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("use_torchvision", [True, False])
def test_image_folder_torchvision_and_builtin_reader_agree(tmp_path, use_torchvision):
    _write_image_folder(tmp_path)
    samples, classes = scan_image_folder(tmp_path / "train", use_torchvision=use_torchvision)
    assert classes == ["cat", "dog"] and [y for _, y in samples] == [0, 0, 1, 1]
    s = load_splits("imagefolder", root=tmp_path, image_size=16, source_fraction=0.0)
    assert len(s.train) == 4 and len(s.test) == 4
    x, _ = s.train.batch([0, 1])
    assert x.shape == (2, 3, 16, 16)


def test_missing_paths_name_the_file_expected(tmp_path):
    with pytest.raises(InvalidScenarioError, match="cifar-100-python.tar.gz") as e:
        load_splits("cifar100", root=tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)
    with pytest.raises(InvalidScenarioError, match="cifar-10-python.tar.gz"):
        load_splits("cifar10", root=None)
    with pytest.raises(InvalidScenarioError, match="train/<class>"):
        load_splits("imagefolder", root=tmp_path)


def test_trainer_round_on_cifar_from_disk(tmp_path):
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    _write_cifar_tgz(tmp_path, 10, n=8)
    cfg = {"name": "disk", "device": "cpu", "data": {"name": "cifar10", "root": str(tmp_path),
                                                     "image_size": 16, "source_fraction": 0.0},
           "model": {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "cut_layer": 1,
                     "checkpoint": "random"},
           "federation": {"num_clients": 2, "clients_per_round": 2, "partition": "iid",
                          "batch_size": 4, "local_steps": 2, "min_client_size": 1},
           "compression": {"tokens_kept": 8, "bits": 4}}
    tr = SplitFedTrainer(cfg, run_dir=False, progress=False)
    role = tr.clients[0]
    assert isinstance(role.data, DiskImageDataset) and role.data.train
    assert role.data._arrays is tr.splits.test._arrays  # a view of the one dataset on disk
    prof = tr.client_cls_profiles([0, 1])
    assert prof[0].shape == (16,) and np.all(np.diff(prof[0]) <= 1e-6)
    tr.run_round(0)
    assert all(r["bits_match"] for r in tr.client_rows if not r["excluded"])
    # the round's batches are reproducible: same seeds -> same augmented pixels
    role.loader.start(0)
    a = role.loader.batch(0)[0]
    role.loader.start(0)
    assert torch.equal(a, role.loader.batch(0)[0])
    assert torch.equal(role.loader.batch(1)[0], role.loader.batch(1)[0])  # random access = stream
