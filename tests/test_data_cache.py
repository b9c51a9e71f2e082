"""Caltech-101 decoded once into a uint8 cache beside the images (lth.data.cache, issue 12):
the second load reads the cache (no image is opened), a changed source rebuilds it, an
unwritable folder still loads, and nothing half-written is left. A tiny fake Caltech layout
(torchvision's: caltech101/101_ObjectCategories/<class>/image_0001.jpg) made with PIL."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lth.data import datasets
from lth.data import cache as data_cache

CLASSES = {"BACKGROUND_Google": 2, "accordion": 3, "airplanes": 4}   # BACKGROUND_Google is not a class


def make_caltech(root, extra: int = 0):
    rng = np.random.default_rng(0)
    for name, count in CLASSES.items():
        folder = root / "caltech101" / "101_ObjectCategories" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1 + (extra if name == "accordion" else 0)):
            h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))   # assorted sizes, as in Caltech
            mode = "L" if i == 1 else "RGB"                                # a grayscale image among them
            pixels = rng.integers(0, 256, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels, mode).save(folder / f"image_{i:04d}.jpg")
    return root / "caltech101" / f"lth-cache-{datasets.CALTECH_SIZE}px.npz"


def test_first_load_decodes_and_caches_second_reads_the_cache(tmp_path, monkeypatch):
    cache = make_caltech(tmp_path)
    first = datasets.load("caltech101", str(tmp_path))
    assert cache.exists() and not list(cache.parent.glob(".*.tmp"))
    n = CLASSES["accordion"] + CLASSES["airplanes"]
    assert len(first.train_y) + len(first.test_y) == n and first.num_classes == 2
    assert first.train_x.dtype == torch.uint8 and first.train_x.shape[1:] == (3, datasets.CALTECH_SIZE, datasets.CALTECH_SIZE)

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache is current")
    monkeypatch.setattr(Image, "open", refuse)
    second = datasets.load("caltech101", str(tmp_path))
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, name), getattr(second, name))


def test_a_changed_source_rebuilds_the_cache(tmp_path):
    cache = make_caltech(tmp_path)
    datasets.load("caltech101", str(tmp_path))
    stamp = os.stat(cache).st_mtime_ns
    make_caltech(tmp_path, extra=1)    # one more accordion image (and the others rewritten)
    grown = datasets.load("caltech101", str(tmp_path))
    assert len(grown.train_y) + len(grown.test_y) == CLASSES["accordion"] + CLASSES["airplanes"] + 1
    assert os.stat(cache).st_mtime_ns != stamp


def test_a_corrupted_cache_is_rebuilt(tmp_path):
    cache = make_caltech(tmp_path)
    reference = datasets.load("caltech101", str(tmp_path))
    cache.write_bytes(b"not a zip file")
    again = datasets.load("caltech101", str(tmp_path))
    assert torch.equal(reference.train_x, again.train_x)
    with np.load(cache) as saved:     # and the rebuilt cache is a good one
        assert saved["x"].shape[0] == len(reference.train_y) + len(reference.test_y)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_still_loads(tmp_path):
    cache = make_caltech(tmp_path)
    os.chmod(cache.parent, 0o555)
    try:
        dataset = datasets.load("caltech101", str(tmp_path))
    finally:
        os.chmod(cache.parent, 0o755)
    assert len(dataset.train_y) > 0 and not cache.exists() and not list(cache.parent.glob(".*.tmp"))


def test_fingerprint_sees_size_and_settings(tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    one = data_cache.fingerprint(tmp_path, [f], "224")
    assert one != data_cache.fingerprint(tmp_path, [f], "112")
    f.write_bytes(b"xy")
    assert one != data_cache.fingerprint(tmp_path, [f], "224")
