"""Image folders and ImageNet: lists of (file, class) and a torch Dataset that decodes them.

    python -m lth.run --dataset imagefolder:/data/birds --image-size 64 ...
    python -m lth.run --dataset imagenet --data-dir /data --image-size 224 ...

Layouts (`scan_imagefolder`, `scan_imagenet`):
  imagefolder:DIR   DIR/train/<class>/<image> and DIR/val/<class>/<image> (or DIR/test/...): the
                    folders' own split; or DIR/<class>/<image>: a seeded split, TEST_FRACTION of
                    each class to test (--split-seed), so every class is in both splits
  imagenet          DATA_DIR/imagenet/train/<wnid>/*.JPEG and .../val/<wnid>/*.JPEG (the layout
                    torchvision's and most training scripts' preparation leaves), or the ILSVRC
                    release itself: DATA_DIR/imagenet/ILSVRC/Data/CLS-LOC/{train/<wnid>, val/*.JPEG}
                    with the labels of val in DATA_DIR/imagenet/LOC_val_solution.csv

Classes are the sorted folder names, files sorted within a class, so the lists (and every
seeded order over them) are the same on every machine. `ImageFiles[i]` decodes file i to RGB,
resizes its shorter side to the run's image size and takes the centre square: uint8 (3, S, S),
what the loaders augment on the device (lth.data.loader, lth.data.streaming). A file that does
not decode is named in a one-line error, or skipped with --bad-images skip
(lth.data.sources).
"""
import csv
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from lth.errors import LthError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
TEST_FRACTION = 0.2          # a folder without its own split: this fraction of each class to test
VAL_NAMES = ("val", "test")  # the test split's folder beside train/
Files = List[Tuple[str, int]]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _class_folders(root: Path) -> List[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _files_of(folder: Path) -> List[str]:
    return sorted(str(p) for p in folder.iterdir() if _is_image(p))


def _with_classes(root: Path, classes: Sequence[str], what: str) -> Files:
    index = {c: i for i, c in enumerate(classes)}
    files = []
    for folder in _class_folders(root):
        if folder.name not in index:
            found = _files_of(folder)
            if found:
                raise LthError(f"{what}: class folder {folder} is not among the training classes")
            continue
        files += [(f, index[folder.name]) for f in _files_of(folder)]
    return files


def _classes(root: Path, what: str) -> List[str]:
    if not root.is_dir():
        raise LthError(f"{what}: {root} is not a folder")
    classes = [d.name for d in _class_folders(root) if _files_of(d)]
    if not classes:
        raise LthError(f"{what}: no class folders with images under {root} (expected {root}/<class>/<image>, "
                       f"or {root}/train/<class>/... and {root}/val/<class>/...; images: "
                       f"{', '.join(IMAGE_EXTENSIONS)})")
    return classes


def scan_imagefolder(root: Path, split_seed: int) -> Tuple[Files, Files, List[str]]:
    """(train files, test files, class names) of an image folder (see the module docstring)."""
    what = f"imagefolder:{root}"
    train_dir = root / "train"
    if train_dir.is_dir():
        val_dir = next((root / v for v in VAL_NAMES if (root / v).is_dir()), None)
        if val_dir is None:
            raise LthError(f"{what}: has train/ but no val/ or test/ beside it (or drop train/ for a seeded split)")
        classes = _classes(train_dir, what)
        train, test = _with_classes(train_dir, classes, what), _with_classes(val_dir, classes, what)
        if not test:
            raise LthError(f"{what}: {val_dir} holds no images in class folders")
        return train, test, classes
    classes = _classes(root, what)
    rng = np.random.default_rng(split_seed)
    train, test = [], []
    for label, name in enumerate(classes):   # per class, so every class is in both splits
        files = _files_of(root / name)
        order = rng.permutation(len(files))
        n_test = int(round(len(files) * TEST_FRACTION)) if len(files) > 1 else 0
        test += [(files[i], label) for i in sorted(order[:n_test])]
        train += [(files[i], label) for i in sorted(order[n_test:])]
    if not test:
        raise LthError(f"{what}: too few images for a seeded split (every class has one image); add images "
                       f"or give train/ and val/ folders")
    return train, test, classes


def scan_imagenet(data_dir: Path) -> Tuple[Files, Files, List[str]]:
    """ImageNet (ILSVRC-2012 classification) in either standard layout (module docstring)."""
    root = data_dir / "imagenet"
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = _classes(root / "train", "imagenet")
        return _with_classes(root / "train", classes, "imagenet"), _with_classes(root / "val", classes, "imagenet"), classes
    cls_loc = root / "ILSVRC" / "Data" / "CLS-LOC"
    solution = root / "LOC_val_solution.csv"
    if not (cls_loc / "train").is_dir():
        raise LthError(f"dataset imagenet not found: looked for {root}/train and {root}/val (class folders), "
                       f"or the ILSVRC release in {cls_loc}; point --data-dir at the folder holding imagenet/")
    if not solution.is_file():
        raise LthError(f"imagenet: {solution} is missing (the labels of the ILSVRC validation images)")
    classes = _classes(cls_loc / "train", "imagenet")
    index = {c: i for i, c in enumerate(classes)}
    test = []
    with open(solution, newline="") as f:
        for row in csv.DictReader(f):
            wnid = row["PredictionString"].split()[0]
            if wnid not in index:
                raise LthError(f"imagenet: {solution} names class {wnid}, which has no training folder")
            test.append((str(cls_loc / "val" / f"{row['ImageId']}.JPEG"), index[wnid]))
    return _with_classes(cls_loc / "train", classes, "imagenet"), sorted(test), classes


def decode(path: str, size: int) -> torch.Tensor:
    """One image as uint8 (3, size, size): RGB, shorter side resized to `size`, centre square.
    Raises whatever PIL raises for a file that does not decode (the callers name the file)."""
    from PIL import Image
    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        image = image.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())


def full_image(path: str) -> torch.Tensor:
    """One image as uint8 (3, H, W) at its own size, RGB (--decode device's path for a file that is
    not a JPEG, lth.data.device_decode). Raises what PIL raises for a file that does not decode."""
    from PIL import Image
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).copy())


class ImageFiles(torch.utils.data.Dataset):
    """Files decoded on access: item i is (uint8 (3, S, S) image, label), or (path, label) when
    the file does not decode, so a loader can name it instead of a worker's traceback."""

    def __init__(self, files: Files, size: int):
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path, label = self.files[i]
        try:
            return decode(path, self.size), label
        except Exception:   # PIL raises many types for a broken file: the caller reports the path
            return path, label

    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.files], dtype=torch.int64)


def bad_message(path: str, reason: Optional[str] = None) -> str:
    why = f" ({reason})" if reason else ""
    return (f"image {path} does not decode{why}; remove it, or pass --bad-images skip to leave such files out")
