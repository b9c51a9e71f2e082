"""Datasets as tensors (the registry `DATASETS`); the loader is lth.data.loader.

    ds = load("mnist", data_dir="data")                     # or "digits": built in, offline

Every dataset is held whole as uint8 NCHW tensors (CIFAR-10: 150 MB), moved to the device
once; cropping, flipping, warping, lighting and resizing are batched tensor ops there
(`augment="fastai"`: fastai's aug_transforms() defaults, lth.data.augment). The data order
and the augmentation draw from two private generators, so two copies of a ticket can differ
in exactly those two sources of SGD noise (analysis.stability).

Datasets (`DATASETS`): digits (scikit-learn's, ships with the package: no network), mnist,
cifar10, cifar100 (their standard on-disk layouts under --data-dir; CIFAR pickles are read
directly, so partial copies load too), caltech101 (torchvision's layout; a seeded 80/20 split).
"""
import functools
import gzip
import logging
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from lth.errors import LthError
from lth.registry import Registry

log = logging.getLogger(__name__)

TEST_FRACTION = 0.2       # digits and caltech101 have no official split: seeded 80/20


def channel_stats(images: torch.Tensor):
    """Per-channel mean and std (floored at 1e-3) of uint8 NCHW images, on the [0, 1] scale."""
    x = images.float()
    return x.mean(dim=(0, 2, 3)) / 255.0, (x.std(dim=(0, 2, 3)) / 255.0).clamp_min(1e-3)


class Normalised:
    """`mean` and `std`, per channel in [0, 1], from a dataset's `stats` (the loaders normalise by them)."""

    @property
    def mean(self) -> torch.Tensor:
        return self.stats[0]

    @property
    def std(self) -> torch.Tensor:
        return self.stats[1]


@dataclass
class Dataset(Normalised):
    """A dataset held in memory: uint8 images (N, C, H, W), int64 labels."""
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def native_size(self) -> int:
        return self.train_x.shape[-1]

    def to(self, device) -> "Dataset":
        """The same dataset with its tensors on `device` (moved once, reused by every loader).
        The normalisation statistics travel along, computed once where the data was."""
        moved = Dataset(self.name, self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
                        self.test_y.to(device), self.num_classes)
        moved.__dict__["stats"] = self.stats
        return moved

    @functools.cached_property
    def stats(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images in [0, 1], computed once: each
        computation makes a float copy of the whole training set (CIFAR-10: 600 MB)."""
        if self.train_x.dim() == 2:   # token ids (issue 21: text datasets): nothing to normalise
            return torch.zeros(1), torch.ones(1)
        return channel_stats(self.train_x)


# An entry is a loader (data_dir, download, split_seed) -> Dataset. Trait official_split: the
# dataset comes with its own test split (False: lth splits it, seeded by --split-seed, which is
# then part of the config and its hash; otherwise the seed is left out).
Loader = Callable[[Path, bool, int], Dataset]
DATASETS = Registry("dataset", traits={"official_split": True})
register = DATASETS.register   # @register("name", official_split=False) def loader(...): ...


def load(name: str, data_dir: str = "data", download: bool = False, split_seed: Optional[int] = 0) -> Dataset:
    """Load a dataset by name; a clear LthError when it is missing and cannot be fetched."""
    return DATASETS.get(name).fn(Path(data_dir).expanduser(), download, split_seed or 0)  # None: an official split


def _missing(name: str, looked_for: Path, reason: str = "") -> LthError:
    why = f" ({reason})" if reason else ""
    return LthError(f"dataset {name} not found: looked for {looked_for}{why}; point --data-dir at a copy, "
                    f"add --download on a machine with network, or use --dataset digits (built in, offline)")


def _split(x: np.ndarray, y: np.ndarray, seed: int):
    """A seeded split into train and test (TEST_FRACTION of the rows to test)."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return torch.from_numpy(x[train]), torch.from_numpy(y[train]), torch.from_numpy(x[test]), torch.from_numpy(y[test])


@register("digits", official_split=False)
def _digits(data_dir: Path, download: bool, split_seed: int) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, ships inside the package)."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    return Dataset("digits", *_split(x, y, split_seed), num_classes=10)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), plain or gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if array.size != math.prod(shape):
        raise LthError(f"{path} is truncated: header says {shape}, file holds {array.size} values")
    return array.reshape(shape)


@register("mnist")
def _mnist(data_dir: Path, download: bool, split_seed: int) -> Dataset:
    raw = data_dir / "MNIST" / "raw"
    if download and not (raw / "train-images-idx3-ubyte").exists():
        _torchvision_download("mnist", lambda tv: [tv.datasets.MNIST(str(data_dir), train=t, download=True) for t in (True, False)])
    arrays = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        path = next((p for p in (raw / stem, raw / f"{stem}.gz") if p.exists()), None)
        if path is None:
            raise _missing("mnist", raw / stem)
        arrays.append(_read_idx(path))
    train_x, train_y, test_x, test_y = arrays
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise LthError(f"MNIST under {raw}: image and label counts differ")
    return Dataset("mnist", torch.from_numpy(train_x.copy())[:, None], torch.from_numpy(train_y.astype(np.int64)),
                   torch.from_numpy(test_x.copy())[:, None], torch.from_numpy(test_y.astype(np.int64)), num_classes=10)


def _read_cifar_pickles(name: str, folder: Path, files, label_key: str):
    xs, ys = [], []
    for file in files:
        path = folder / file
        if not path.exists():
            raise _missing(name, path)
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")  # the official format; data files are trusted input here
        except Exception as e:
            raise LthError(f"{path} is not a readable CIFAR pickle ({type(e).__name__})") from None
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def _torchvision_download(name: str, fetch) -> None:
    import torchvision
    try:
        fetch(torchvision)
    except Exception as e:  # network errors come in many types
        raise LthError(f"could not download {name}: {type(e).__name__}: {e}") from None


@register("cifar10")
def _cifar10(data_dir: Path, download: bool, split_seed: int) -> Dataset:
    folder = data_dir / "cifar-10-batches-py"
    if download and not folder.exists():
        _torchvision_download("cifar10", lambda tv: tv.datasets.CIFAR10(str(data_dir), download=True))
    train_x, train_y = _read_cifar_pickles("cifar10", folder, [f"data_batch_{i}" for i in range(1, 6)], "labels")
    test_x, test_y = _read_cifar_pickles("cifar10", folder, ["test_batch"], "labels")
    return Dataset("cifar10", train_x, train_y, test_x, test_y, num_classes=10)


@register("cifar100")
def _cifar100(data_dir: Path, download: bool, split_seed: int) -> Dataset:
    folder = data_dir / "cifar-100-python"
    if download and not folder.exists():
        _torchvision_download("cifar100", lambda tv: tv.datasets.CIFAR100(str(data_dir), download=True))
    train_x, train_y = _read_cifar_pickles("cifar100", folder, ["train"], "fine_labels")
    test_x, test_y = _read_cifar_pickles("cifar100", folder, ["test"], "fine_labels")
    return Dataset("cifar100", train_x, train_y, test_x, test_y, num_classes=100)


CALTECH_SIZE = 224  # Caltech-101 images vary in size: stored resized to the paper's 224x224


@register("caltech101", official_split=False)
def _caltech101(data_dir: Path, download: bool, split_seed: int) -> Dataset:
    """Decoded and resized once, then read from a uint8 cache beside the images (lth.data.cache)."""
    import torchvision
    from PIL import Image
    from lth.data import cache as data_cache
    folder = data_dir / "caltech101" / "101_ObjectCategories"
    if download and not folder.exists():
        _torchvision_download("caltech101", lambda tv: tv.datasets.Caltech101(str(data_dir), download=True))
    if not folder.exists():
        raise _missing("caltech101", folder)
    dataset = torchvision.datasets.Caltech101(str(data_dir), target_type="category", download=False)
    files = [folder / dataset.categories[c] / f"image_{i:04d}.jpg" for i, c in zip(dataset.index, dataset.y)]

    def decode_one(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((CALTECH_SIZE, CALTECH_SIZE))
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)

    def decode():
        return np.stack([decode_one(f) for f in files]), np.asarray(dataset.y, dtype=np.int64)

    stamp = data_cache.fingerprint(folder, files, f"rgb-resize-{CALTECH_SIZE}")
    x, y = data_cache.cached_arrays(folder.parent / f"lth-cache-{CALTECH_SIZE}px.npz", stamp, decode)
    return Dataset("caltech101", *_split(x, y, split_seed), num_classes=int(y.max()) + 1)
