"""Datasets as tensors, and the device-resident loader.

    ds = load("mnist", data_dir="data")                    # or "digits": built in, offline
    loader = DeviceLoader(ds.train_x, ds.train_y, ds, batch_size=128, device="cpu",
                          train=True, augment="crop_flip", image_size=32,
                          order_seed=1, augment_seed=2)
    for x, y in loader: ...                                 # one epoch

Every dataset is held whole as uint8 NCHW tensors (CIFAR-10: 150 MB), moved to the device
once; cropping, flipping, warping, lighting and resizing are batched tensor ops there
(`augment="fastai"`: fastai's aug_transforms() defaults, lth.augment). The data order
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
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from lth import augment
from lth.errors import LthError

log = logging.getLogger(__name__)

AUGMENTATIONS = ("none", "crop_flip", "fastai")
CROP_PADDING = 4          # crop_flip: pixels of zero padding before the random crop (CIFAR standard)
TEST_FRACTION = 0.2       # digits and caltech101 have no official split: seeded 80/20


@dataclass
class Dataset:
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
        x = self.train_x.float()
        return x.mean(dim=(0, 2, 3)) / 255.0, (x.std(dim=(0, 2, 3)) / 255.0).clamp_min(1e-3)

    @property
    def mean(self) -> torch.Tensor:
        return self.stats[0]

    @property
    def std(self) -> torch.Tensor:
        return self.stats[1]


Loader = Callable[[Path, bool, int], Dataset]
DATASETS: Dict[str, Loader] = {}


def register(name: str):
    def add(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn
    return add


def load(name: str, data_dir: str = "data", download: bool = False, split_seed: Optional[int] = 0) -> Dataset:
    """Load a dataset by name; a clear LthError when it is missing and cannot be fetched."""
    if name not in DATASETS:
        raise LthError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](Path(data_dir).expanduser(), download, split_seed or 0)  # None: an official split


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


@register("digits")
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


@register("caltech101")
def _caltech101(data_dir: Path, download: bool, split_seed: int) -> Dataset:
    """Decoded and resized once, then read from a uint8 cache beside the images (lth.data_cache)."""
    import torchvision
    from PIL import Image
    from lth import data_cache
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


# ---- the device-resident loader ------------------------------------------------------------

class DeviceLoader:
    """Batches of one split, held whole on `device`; one pass of iteration is one epoch.

    train=True: reshuffles every epoch (order generator) and augments (augment generator);
    train=False: fixed order, no augmentation, the last partial batch kept.
    Yields (float images normalised by the dataset's mean/std, int64 labels).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, dataset: Dataset, batch_size: int, device,
                 train: bool, augment: str = "none", image_size: Optional[int] = None,
                 order_seed: int = 0, augment_seed: int = 0, channels_last: bool = False):
        if augment not in AUGMENTATIONS:
            raise LthError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
        if batch_size < 1:
            raise LthError(f"batch size must be at least 1, got {batch_size}")
        if train and len(y) < batch_size:
            raise LthError(f"batch size {batch_size} exceeds the {len(y)} training images of {dataset.name}")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, augment if train else "none"
        self.image_size = image_size or dataset.native_size
        self.channels_last = channels_last
        self.mean = dataset.mean.to(self.device).view(1, -1, 1, 1)
        self.std = dataset.std.to(self.device).view(1, -1, 1, 1)
        self.order_generator = torch.Generator(device=self.device).manual_seed(order_seed)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(augment_seed or 0)  # None: no augmentation
        # The position inside the current epoch (late rewinding resumes mid-epoch, docs/DESIGN.md §2):
        self.epoch_order_state = self.order_generator.get_state()  # order generator before this epoch's shuffle
        self.consumed = 0   # batches of the current epoch handed out so far
        self.skip = 0       # batches the next epoch skips: set by a restored mid-epoch position or seek()

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        self.epoch_order_state = self.order_generator.get_state()
        if self.train:
            order = torch.randperm(n, generator=self.order_generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        first, self.skip = self.skip, 0  # skipped batches are neither augmented nor yielded
        for i in range(first, len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            batch = self.transform(self.x[index]), self.y[index]
            self.consumed = i + 1
            yield batch

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> augmented, resized, normalised float batch."""
        x = images.float().div_(255.0)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if self.augment == "crop_flip":
            x = self._crop_flip(x)
        elif self.augment == "fastai":
            x = self._fastai(x)
        x = (x - self.mean) / self.std
        # The crop gather leaves channels-last strides: make the layout explicit either way
        # (a channels-last batch into an NCHW model cost resnet20 on CPU 0.76x, lth.bench).
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop after zero padding, then random horizontal flip: batched gathers."""
        b, _, h, w = x.shape
        p = CROP_PADDING
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,), generator=self.augment_generator, device=self.device)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=self.augment_generator, device=self.device)
        flip = torch.rand(b, generator=self.augment_generator, device=self.device) < 0.5
        rows = dy[:, None] + torch.arange(h, device=self.device)                      # (b, h)
        cols = dx[:, None] + torch.arange(w, device=self.device)                      # (b, w)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        batch = torch.arange(b, device=self.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _fastai(self, x: torch.Tensor) -> torch.Tensor:
        """fastai's aug_transforms() defaults (lth.augment): flip, then rotation, zoom and warp
        each with probability 0.75 in one resampling, then brightness and contrast (each 0.75)."""
        return augment.apply(x, augment.draw(len(x), self.augment_generator, self.device))

    # ---- resuming -----------------------------------------------------------------------
    def state_dict(self, position: bool = False) -> Dict[str, torch.Tensor]:
        """The generators' states: where the next epoch starts. position=True, in the middle of
        an epoch, also records where this epoch started and how many of its batches were handed
        out, so that a loader restored from it continues with exactly the remaining batches
        (and augmentations) of this epoch. At an epoch's end both say the same."""
        state = {"order": self.order_generator.get_state(), "augment": self.augment_generator.get_state()}
        if position and 0 < self.consumed < len(self):
            state.update(epoch_order=self.epoch_order_state, consumed=torch.tensor(self.consumed))
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        if "consumed" in state:  # mid-epoch: replay this epoch's shuffle, skip what was handed out
            self.order_generator.set_state(state["epoch_order"])
            self.skip = int(state["consumed"])
        else:
            self.order_generator.set_state(state["order"])
            self.skip = 0
        self.augment_generator.set_state(state["augment"])

    def seek(self, batches: int) -> None:
        """Move a fresh loader `batches` batches into its own data order (whole epochs are
        shuffled and passed over, then the next epoch skips the rest), drawing no augmentation:
        how a ticket copy with its own seeds starts at step k (analysis.copies), as OpenLTH's
        loader skips to (epoch, iteration) of the start step."""
        for _ in range(batches // len(self)):
            torch.randperm(len(self.y), generator=self.order_generator, device=self.device)
        self.skip = batches % len(self)
