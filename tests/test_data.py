"""Datasets and the device-resident loader. Offline: only `digits` and synthetic files."""
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lth.data import datasets
from lth.data.datasets import Dataset
from lth.data.loader import DeviceLoader
from lth.errors import LthError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def encoded(values, labels=None, size=16, channels=1, name="encoded") -> Dataset:
    """A dataset whose image i is constant with value values[i] (so the pixels name the image)."""
    values = torch.as_tensor(values, dtype=torch.uint8)
    x = values.view(-1, 1, 1, 1).expand(-1, channels, size, size).contiguous()
    y = torch.as_tensor(labels if labels is not None else values.tolist(), dtype=torch.int64)
    return Dataset(name, x, y, x.clone(), y.clone(), num_classes=int(y.max()) + 1)


def raw_pixels(loader: DeviceLoader, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: pixel values on the 0..255 scale."""
    return (x * loader.std + loader.mean) * 255.0


def centre_values(loader: DeviceLoader, x: torch.Tensor) -> torch.Tensor:
    """The value each image's centre 4x4 pixels decode to (they agree), rounded."""
    h, w = x.shape[-2:]
    centre = raw_pixels(loader, x)[:, :, h // 2 - 2:h // 2 + 2, w // 2 - 2:w // 2 + 2]
    per_image = centre.flatten(1)
    assert float((per_image.max(1).values - per_image.min(1).values).max()) < 0.5
    return per_image.mean(1).round().long()


def epoch(loader):
    xs, ys = zip(*list(loader))
    return list(xs), list(ys)


def make_loader(ds, train=True, **kw):
    args = dict(batch_size=32, device="cpu", train=train)
    args.update(kw)
    x, y = (ds.train_x, ds.train_y) if train else (ds.test_x, ds.test_y)
    return DeviceLoader(x, y, ds, **args)


# ---- digits --------------------------------------------------------------------------------

def test_digits_shapes_and_dtype(digits):
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.train_x.shape == (1438, 1, 8, 8)
    assert digits.test_x.shape == (359, 1, 8, 8)
    assert digits.train_x.dtype == torch.uint8 and digits.test_x.dtype == torch.uint8
    assert digits.train_y.dtype == torch.int64 and digits.test_y.dtype == torch.int64
    assert digits.train_y.shape == (1438,) and digits.test_y.shape == (359,)
    assert set(digits.train_y.tolist()) == set(range(10))
    assert set(digits.test_y.tolist()) == set(range(10))
    assert int(digits.train_x.max()) == 255 and int(digits.train_x.min()) == 0
    assert digits.in_channels == 1 and digits.native_size == 8
    assert digits.mean.shape == (1,) and digits.std.shape == (1,)
    assert 0.0 < float(digits.mean) < 1.0


def test_digits_split_is_deterministic_per_seed(digits):
    again = datasets.load("digits", split_seed=0)
    assert torch.equal(digits.train_x, again.train_x) and torch.equal(digits.train_y, again.train_y)
    assert torch.equal(digits.test_x, again.test_x) and torch.equal(digits.test_y, again.test_y)
    other = datasets.load("digits", split_seed=1)
    assert other.train_x.shape == digits.train_x.shape
    assert not torch.equal(other.test_y, digits.test_y) or not torch.equal(other.test_x, digits.test_x)
    # both seeds split the same 1,797 images: the union is the same multiset
    def everything(ds):
        flat = torch.cat([ds.train_x, ds.test_x]).flatten(1)
        labels = torch.cat([ds.train_y, ds.test_y])[:, None]
        rows = torch.cat([flat.long(), labels], 1)
        return sorted(map(tuple, rows.tolist()))
    assert everything(digits) == everything(other)


def test_digits_train_and_test_are_disjoint_rows(digits):
    train = {tuple(r) for r in digits.train_x.flatten(1).tolist()}
    test = [tuple(r) for r in digits.test_x.flatten(1).tolist()]
    # digits has a handful of duplicate images; almost all test images are unseen
    assert sum(r in train for r in test) < 10


def test_dataset_to_device_keeps_everything():
    ds = encoded(range(10))
    moved = ds.to("cpu")
    assert moved.name == ds.name and moved.num_classes == ds.num_classes
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(moved, key), getattr(ds, key))


# ---- loader basics -----------------------------------------------------------------------

def test_loader_shapes_dtypes_and_len(digits):
    loader = make_loader(digits, batch_size=64)
    assert len(loader) == 1438 // 64
    batches = list(loader)
    assert len(batches) == len(loader)
    for x, y in batches:
        assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (64,) and y.dtype == torch.int64
    test_loader = make_loader(digits, train=False, batch_size=100)
    assert len(test_loader) == 4
    sizes = [len(y) for _, y in test_loader]
    assert sizes == [100, 100, 100, 59]


def test_loader_normalises_with_training_statistics(digits):
    loader = make_loader(digits, train=False, batch_size=500)
    loader_train_rows = DeviceLoader(digits.train_x, digits.train_y, digits, batch_size=500,
                                     device="cpu", train=False)
    x = torch.cat([b for b, _ in loader_train_rows])
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-3)
    first, _ = next(iter(loader))
    expected = (digits.test_x[:500].float() / 255.0 - digits.mean.view(1, -1, 1, 1)) / digits.std.view(1, -1, 1, 1)
    assert torch.allclose(first, expected, atol=1e-5)


def test_eval_loader_returns_all_rows_in_order():
    values = list(range(0, 230, 10))  # 23 images, labels = index
    ds = encoded(values, labels=list(range(23)), size=8)
    loader = DeviceLoader(ds.test_x, ds.test_y, ds, batch_size=5, device="cpu", train=False,
                          augment="crop_flip")  # augmentation is ignored when train=False
    assert len(loader) == 5
    xs, ys = epoch(loader)
    assert [len(y) for y in ys] == [5, 5, 5, 5, 3]
    assert torch.cat(ys).tolist() == list(range(23))
    assert centre_values(loader, torch.cat(xs)).tolist() == values
    # and again: the same order every time
    assert torch.equal(torch.cat(epoch(loader)[1]), torch.cat(ys))


def test_train_loader_drops_the_last_partial_batch():
    ds = encoded(range(50), size=4)
    loader = make_loader(ds, batch_size=16)
    assert len(loader) == 3
    xs, ys = epoch(loader)
    seen = torch.cat(ys).tolist()
    assert len(seen) == 48 and len(set(seen)) == 48 and set(seen) <= set(range(50))
    assert centre_values(loader, torch.cat(xs)).tolist() == seen  # images match labels


def test_resize_to_image_size(digits):
    loader = make_loader(digits, batch_size=16, image_size=32, augment="crop_flip")
    x, y = next(iter(loader))
    assert x.shape == (16, 1, 32, 32)
    eval_loader = make_loader(digits, train=False, batch_size=16, image_size=28)
    x, _ = next(iter(eval_loader))
    assert x.shape == (16, 1, 28, 28)
    # resizing is bilinear resampling of the whole image
    expected = F.interpolate(digits.test_x[:16].float() / 255.0, size=(28, 28), mode="bilinear",
                             align_corners=False)
    assert torch.allclose(raw_pixels(eval_loader, x) / 255.0, expected, atol=1e-5)
    # a constant image stays constant
    ds = encoded([40, 200], size=8)
    resized = DeviceLoader(ds.test_x, ds.test_y, ds, 2, "cpu", train=False, image_size=20)
    native = DeviceLoader(ds.test_x, ds.test_y, ds, 2, "cpu", train=False)
    assert resized.image_size == 20 and native.image_size == 8
    x, _ = next(iter(resized))
    assert x.shape == (2, 1, 20, 20)
    expected = torch.tensor([40.0, 200.0]).view(2, 1, 1, 1).expand(2, 1, 20, 20)
    assert torch.allclose(raw_pixels(resized, x), expected, atol=1e-3)


def test_channels_last_option(digits):
    x, _ = next(iter(make_loader(digits, batch_size=8, channels_last=True)))
    assert x.shape == (8, 1, 8, 8)
    ds = encoded(range(0, 240, 10), size=8, channels=3)
    x, _ = next(iter(DeviceLoader(ds.train_x, ds.train_y, ds, 8, "cpu", train=True, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)


# ---- seeds: order and augmentation ---------------------------------------------------------

@pytest.mark.parametrize("augment", ["none", "crop_flip", "fastai"])
def test_same_seeds_same_batches(digits, augment):
    a = make_loader(digits, augment=augment, order_seed=3, augment_seed=4)
    b = make_loader(digits, augment=augment, order_seed=3, augment_seed=4)
    for _ in range(2):  # two epochs: the generators advance identically
        (xa, ya), (xb, yb) = epoch(a), epoch(b)
        assert all(torch.equal(p, q) for p, q in zip(ya, yb))
        assert all(torch.equal(p, q) for p, q in zip(xa, xb))


def test_epochs_reshuffle(digits):
    loader = make_loader(digits, order_seed=3)
    first, second = torch.cat(epoch(loader)[1]), torch.cat(epoch(loader)[1])
    assert not torch.equal(first, second)


def test_different_order_seeds_same_multiset_different_order():
    n = 120
    ds = encoded(range(n), size=4)
    a = make_loader(ds, batch_size=12, order_seed=1)
    b = make_loader(ds, batch_size=12, order_seed=2)
    (xa, ya), (xb, yb) = epoch(a), epoch(b)
    ya, yb = torch.cat(ya), torch.cat(yb)
    assert not torch.equal(ya, yb)
    assert sorted(ya.tolist()) == sorted(yb.tolist()) == list(range(n))  # every image once
    assert centre_values(a, torch.cat(xa)).tolist() == ya.tolist()
    assert centre_values(b, torch.cat(xb)).tolist() == yb.tolist()


def test_different_order_seeds_on_digits_same_label_counts(digits):
    # drop_last: with 1,438 rows and batch 719 the epoch covers every row
    a = make_loader(digits, batch_size=719, order_seed=1)
    b = make_loader(digits, batch_size=719, order_seed=2)
    ya, yb = torch.cat(epoch(a)[1]), torch.cat(epoch(b)[1])
    assert not torch.equal(ya, yb)
    assert torch.equal(torch.bincount(ya, minlength=10), torch.bincount(yb, minlength=10))
    assert torch.equal(torch.bincount(ya, minlength=10), torch.bincount(digits.train_y, minlength=10))


@pytest.mark.parametrize("augment", ["crop_flip", "fastai"])
def test_different_augment_seeds_same_order_different_images(digits, augment):
    a = make_loader(digits, augment=augment, order_seed=5, augment_seed=1)
    b = make_loader(digits, augment=augment, order_seed=5, augment_seed=2)
    plain = make_loader(digits, augment="none", order_seed=5)
    (xa, ya), (xb, yb), (xp, yp) = epoch(a), epoch(b), epoch(plain)
    assert all(torch.equal(p, q) for p, q in zip(ya, yb))
    assert all(torch.equal(p, q) for p, q in zip(ya, yp))
    xa, xb, xp = torch.cat(xa), torch.cat(xb), torch.cat(xp)
    assert not torch.equal(xa, xb)
    assert not torch.equal(xa, xp)
    # most images differ between the two augmentation seeds
    differs = (xa - xb).flatten(1).abs().amax(1) > 1e-6
    assert float(differs.float().mean()) > 0.5


def test_crop_flip_is_a_padded_crop_and_maybe_a_flip(digits):
    loader = make_loader(digits, batch_size=64, augment="crop_flip", order_seed=0, augment_seed=9)
    order = torch.randperm(len(digits.train_y), generator=torch.Generator().manual_seed(0))
    x, y = next(iter(loader))
    assert torch.equal(y, digits.train_y[order[:64]])
    images = raw_pixels(loader, x) / 255.0
    originals = F.pad(digits.train_x[order[:64]].float() / 255.0, (4, 4, 4, 4))
    flips = shifts = 0
    for image, padded in zip(images, originals):
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.allclose(image, (padded[:, dy:dy + 8, dx:dx + 8].flip(-1) if flip
                                             else padded[:, dy:dy + 8, dx:dx + 8]), atol=1e-4)]
        assert matches, "an augmented image is not a crop of the padded original"
        flips += all(m[2] for m in matches)
        shifts += all((m[0], m[1]) != (4, 4) for m in matches)
    assert 10 < flips < 54  # about half flipped
    assert shifts > 32      # most shifted


@pytest.mark.parametrize("augment", ["crop_flip"])   # fastai changes lighting: tests/test_augment.py
def test_augmentation_keeps_labels_aligned(augment):
    labels = [i % 10 for i in range(60)]
    ds = encoded([20 * label for label in labels], labels=labels, size=16)
    loader = make_loader(ds, batch_size=20, augment=augment, order_seed=7, augment_seed=8)
    for _ in range(2):
        for x, y in loader:
            assert x.shape == (20, 1, 16, 16)
            decoded = centre_values(loader, x)
            assert torch.equal(decoded, 20 * y), (decoded.tolist(), y.tolist())


def test_augmentation_keeps_labels_aligned_after_resize():
    labels = [i % 10 for i in range(40)]
    ds = encoded([20 * label for label in labels], labels=labels, size=8)
    loader = make_loader(ds, batch_size=8, augment="crop_flip", image_size=24, order_seed=1, augment_seed=2)
    for x, y in loader:
        assert torch.equal(centre_values(loader, x), 20 * y)


# ---- resuming ----------------------------------------------------------------------------

@pytest.mark.parametrize("augment", ["crop_flip", "fastai"])
def test_state_dict_reproduces_the_next_epoch(digits, augment, tmp_path):
    a = make_loader(digits, augment=augment, order_seed=11, augment_seed=12)
    epoch(a)
    state = a.state_dict()
    torch.save(state, tmp_path / "loader.pt")
    expected_x, expected_y = epoch(a)
    b = make_loader(digits, augment=augment, order_seed=0, augment_seed=0)  # different seeds
    b.load_state_dict(torch.load(tmp_path / "loader.pt", weights_only=True))
    got_x, got_y = epoch(b)
    assert all(torch.equal(p, q) for p, q in zip(expected_y, got_y))
    assert all(torch.equal(p, q) for p, q in zip(expected_x, got_x))
    # and the epoch after that too
    assert all(torch.equal(p, q) for p, q in zip(epoch(a)[0], epoch(b)[0]))
    # a loader that did not load the state differs
    c = make_loader(digits, augment=augment, order_seed=0, augment_seed=0)
    assert not all(torch.equal(p, q) for p, q in zip(expected_y, epoch(c)[1]))


# ---- errors ------------------------------------------------------------------------------

def test_unknown_dataset_raises_with_choices():
    with pytest.raises(LthError) as info:
        datasets.load("imagenet22k")
    message = str(info.value)
    assert "imagenet22k" in message
    for name in ("digits", "mnist", "cifar10"):
        assert name in message


def test_unknown_augmentation_raises(digits):
    with pytest.raises(LthError, match="crop_flip"):
        make_loader(digits, augment="mixup")


def test_bad_batch_sizes_raise(digits):
    with pytest.raises(LthError):
        make_loader(digits, batch_size=0)
    with pytest.raises(LthError, match="1438"):
        make_loader(digits, batch_size=5000)
    # evaluation may use a batch larger than the split
    loader = make_loader(digits, train=False, batch_size=5000)
    assert len(loader) == 1 and len(next(iter(loader))[1]) == 359


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "caltech101"])
def test_missing_dataset_names_the_path_and_digits(name, tmp_path):
    with pytest.raises(LthError) as info:
        datasets.load(name, data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message
    assert "digits" in message
    assert name in message


# ---- the on-disk formats, with tiny synthetic files ------------------------------------------

def _idx_bytes(array: np.ndarray) -> bytes:
    code = 0x08  # unsigned byte
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5)}
    for stem, array in arrays.items():
        if gz:
            with gzip.open(raw / f"{stem}.gz", "wb") as f:
                f.write(_idx_bytes(array))
        else:
            (raw / stem).write_bytes(_idx_bytes(array))
    ds = datasets.load("mnist", data_dir=str(tmp_path))
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_x.shape == (5, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes == 10


def test_truncated_mnist_file_raises(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, shape in (("train-images-idx3-ubyte", (4, 28, 28)), ("train-labels-idx1-ubyte", (4,)),
                        ("t10k-images-idx3-ubyte", (2, 28, 28)), ("t10k-labels-idx1-ubyte", (2,))):
        (raw / stem).write_bytes(_idx_bytes(np.zeros(shape)))
    full = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(full[:-100])
    with pytest.raises(LthError, match="truncated"):
        datasets.load("mnist", data_dir=str(tmp_path))


def test_cifar10_reads_partial_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name, rows in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 4)]:
        batch = {"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, rows).tolist(), "batch_label": name,
                 "filenames": [f"{i}.png" for i in range(rows)]}
        batches[name] = batch
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    ds = datasets.load("cifar10", data_dir=str(tmp_path))
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_y.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    # row-major RGB planes: the first 1024 values are the red plane
    first = batches["data_batch_1"]["data"][0]
    assert np.array_equal(ds.train_x[0, 0].numpy().reshape(-1), first[:1024])
    assert np.array_equal(ds.train_x[0, 2].numpy().reshape(-1), first[2048:])


def test_unreadable_cifar_pickle_raises(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(LthError, match="data_batch_1"):
        datasets.load("cifar10", data_dir=str(tmp_path))


# ---- the real partial copies, where this machine has them ----------------------------------

@pytest.mark.skipif(not SHARED_DATA.exists(), reason="no ../shared/data on this machine")
def test_shared_partial_copies_load():
    mnist = datasets.load("mnist", data_dir=str(SHARED_DATA))
    assert mnist.train_x.shape == (3009, 1, 28, 28) and mnist.test_x.shape == (10000, 1, 28, 28)
    assert mnist.train_y.shape == (3009,) and mnist.test_y.shape == (10000,)
    assert set(mnist.test_y.tolist()) == set(range(10))
    cifar = datasets.load("cifar10", data_dir=str(SHARED_DATA))
    assert cifar.train_x.shape == (4660, 3, 32, 32) and cifar.test_x.shape == (846, 3, 32, 32)
    assert cifar.train_x.dtype == torch.uint8 and cifar.num_classes == 10
    assert set(cifar.train_y.tolist()) == set(range(10))
