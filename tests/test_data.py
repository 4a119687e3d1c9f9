"""Data loaders: digits, CIFAR archives (fake, tiny), Tiny-ImageNet folder (fake, tiny)."""
import pickle
import tarfile

import numpy as np
import pytest
from fake_archives import write_tiny_imagenet

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.errors import InvalidScenarioError  # noqa: E402
from ste_opt.learning_hooks.data import load_cifar, load_splits, load_tiny_imagenet  # noqa: E402


def _cifar_batch(n, k, label_key, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key.encode(): rng.integers(0, k, n).tolist(), b"batch_label": b"fake"}


def _write_cifar(root, which=10, as_tar=False):
    folder = "cifar-10-batches-py" if which == 10 else "cifar-100-python"
    names = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]) if which == 10 else ["train", "test"]
    key = "labels" if which == 10 else "fine_labels"
    d = root / folder
    d.mkdir(parents=True)
    for i, n in enumerate(names):
        with (d / n).open("wb") as fh:
            pickle.dump(_cifar_batch(6, which, key, i), fh)
    if as_tar:
        tgz = root / ("cifar-10-python.tar.gz" if which == 10 else "cifar-100-python.tar.gz")
        with tarfile.open(tgz, "w:gz") as tf:
            tf.add(d, arcname=folder)
        return tgz
    return d


def test_digits_splits_disjoint_and_seeded():
    s = load_splits("digits", image_size=28, seed=1)
    assert len(s.source) + len(s.train) + len(s.test) == 1797
    x, y = s.train.batch([0, 1, 2])
    assert x.shape == (3, 3, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    s2 = load_splits("digits", image_size=28, seed=1)
    assert torch.equal(s.test.labels, s2.test.labels)
    s3 = load_splits("digits", image_size=28, seed=2)
    assert not torch.equal(s.test.images[:20], s3.test.images[:20])
    # disjoint: no image appears in two splits
    def keys(ds):
        return {hash(ds.images[i].numpy().tobytes()) for i in range(len(ds))}
    a, b, c = keys(s.source), keys(s.train), keys(s.test)
    assert not (a & b) or len(a & b) < 5  # digits has a few exact duplicates
    assert len(a & c) < 5 and len(b & c) < 5


@pytest.mark.parametrize("which", [10, 100])
@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar_archives(tmp_path, which, as_tar):
    path = _write_cifar(tmp_path, which, as_tar)
    train, test = load_cifar(path, which)
    n_train = 30 if which == 10 else 6
    assert len(train) == n_train and len(test) == 6
    x, y = train.batch([0, 1])
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert int(y.max()) < which
    # the parent folder works too
    train2, _ = load_cifar(tmp_path, which)
    assert len(train2) == n_train
    s = load_splits(f"cifar{which}", root=tmp_path, source_fraction=0.5, test_fraction=0.2)
    assert len(s.source) + len(s.train) == n_train and len(s.test) == 6


def test_cifar_errors(tmp_path):
    with pytest.raises(InvalidScenarioError, match="does not exist"):
        load_cifar(tmp_path / "nope", 10)
    with pytest.raises(InvalidScenarioError, match="expected"):
        load_cifar(tmp_path, 10)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(InvalidScenarioError, match="malformed"):
        load_cifar(tmp_path, 10)
    bad = tmp_path / "b"
    (bad / "cifar-100-python").mkdir(parents=True)
    for n in ("train", "test"):
        with (bad / "cifar-100-python" / n).open("wb") as fh:
            pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, fh)
    with pytest.raises(InvalidScenarioError, match="shape"):
        load_cifar(bad, 100)
    with pytest.raises(InvalidScenarioError, match="data.root"):
        load_splits("cifar10", root=None)
    with pytest.raises(InvalidScenarioError):
        load_splits("mnist", root=tmp_path)


def _write_tiny(root, wnids=("n01", "n02"), per_class=3):
    return write_tiny_imagenet(root, wnids, per_class)


def test_tiny_imagenet_folder(tmp_path):
    _write_tiny(tmp_path)
    train, val = load_tiny_imagenet(tmp_path, image_size=32)
    assert len(train) == 6 and len(val) == 2 and train.num_classes == 2
    x, y = val.batch([0, 1])
    assert x.shape == (2, 3, 32, 32) and sorted(y.tolist()) == [0, 1]
    tr2, _ = load_tiny_imagenet(tmp_path, max_per_class=1)
    assert len(tr2) == 2


def test_tiny_imagenet_errors(tmp_path):
    with pytest.raises(InvalidScenarioError, match="wnids"):
        load_tiny_imagenet(tmp_path)
    base = _write_tiny(tmp_path)
    (base / "val" / "val_annotations.txt").write_text("val_x.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(InvalidScenarioError, match="unknown class"):
        load_tiny_imagenet(tmp_path)
