"""Tiny image folders for the data tests (issue 21): PNG and JPEG files of varying sizes."""
from pathlib import Path

import numpy as np


def make_folder(root: Path, classes: int = 3, per_class: int = 6, split: bool = False, seed: int = 0) -> Path:
    """root/<class>/<image>, or root/{train,val}/<class>/<image> with split (every 3rd to val)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for c in range(classes):
        for i in range(per_class):
            where = (("val" if i % 3 == 0 else "train") if split else "")
            folder = root / where / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            h, w = (int(v) for v in rng.integers(10, 20, size=2))
            image = rng.integers(0, 255, size=(h, w, 3)).astype(np.uint8)
            Image.fromarray(image).save(folder / f"img{i:02d}.{'png' if i % 2 else 'jpg'}")
    (root / "README.txt").write_text("not an image")
    return root


def break_image(path: Path) -> Path:
    path.write_bytes(b"\x89PNG garbage, not an image")
    return path


def truncate_image(path: Path) -> Path:
    """Keep the first half of the file: its header still reads, its pixels do not decode."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def add_jpeg_modes(folder: Path, seed: int = 1) -> None:
    """A grayscale and a CMYK JPEG in `folder` (both must come out RGB)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, size=(14, 18, 3)).astype(np.uint8))
    image.convert("L").save(folder / "gray.jpg")
    image.convert("CMYK").save(folder / "cmyk.jpg")
