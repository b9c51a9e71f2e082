"""Image folders, ImageNet layouts and MODULE:FUNCTION datasets (lth.data.sources, folders; issue 21):
splits, memory vs stream, bad images (fail names the file, skip leaves it out), bad input one line."""
import csv
import shutil

import numpy as np
import pytest
import torch

from lth import config
from lth.data import folders, sources
from lth.data.datasets import Dataset
from lth.data.streaming import StreamDataset
from lth.errors import LthError, cli_main
from lth import run
from tests.folderhelpers import break_image, make_folder


def cfg_for(dataset, **overrides):
    return config.from_overrides({"dataset": dataset, "image_size": 8, "model": "lenet300_100", "layers": "all",
                                  "augment": "none", "device": "cpu", **overrides})


def test_train_val_folders(tmp_path):
    root = make_folder(tmp_path / "f", split=True)
    ds = sources.load_config(cfg_for(f"imagefolder:{root}"))
    assert isinstance(ds, Dataset) and ds.num_classes == 3
    assert ds.train_x.shape == (12, 3, 8, 8) and ds.test_x.shape == (6, 3, 8, 8) and ds.train_x.dtype == torch.uint8
    assert ds.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_seeded_split_is_per_class_and_reproducible(tmp_path):
    root = make_folder(tmp_path / "f", per_class=10)
    a, b = (folders.scan_imagefolder(root, 0) for _ in range(2))
    c = folders.scan_imagefolder(root, 1)
    assert a == b and a[1] != c[1]
    train, test, classes = a
    assert classes == ["class0", "class1", "class2"] and len(test) == 6 and len(train) == 24
    assert sorted({label for _, label in test}) == [0, 1, 2]      # every class in both splits
    assert not set(f for f, _ in train) & set(f for f, _ in test)
    h = cfg_for(f"imagefolder:{root}").hash()
    assert cfg_for(f"imagefolder:{root}", split_seed=1).hash() != h   # the split seed is hashed for folders


def test_decode_resizes_shorter_side_and_centre_crops(tmp_path):
    from PIL import Image
    image = np.zeros((10, 30, 3), dtype=np.uint8)
    image[:, 10:20] = 255                     # a white centre third
    Image.fromarray(image).save(tmp_path / "wide.png")
    x = folders.decode(str(tmp_path / "wide.png"), 5)
    assert x.shape == (3, 5, 5) and x.dtype == torch.uint8 and x.float().mean() > 200


@pytest.mark.parametrize("layout, message", [
    ("empty", "no class folders with images"),
    ("no_val", "has train/ but no val/"),
    ("extra_val_class", "is not among the training classes"),
    ("missing", "is not a folder"),
    ("one_each", "too few images for a seeded split"),
])
def test_bad_folders_are_one_line(tmp_path, layout, message):
    root = tmp_path / "f"
    if layout == "empty":
        (root / "class0").mkdir(parents=True)
        (root / "class0" / "notes.txt").write_text("x")
    elif layout == "no_val":
        make_folder(root, split=True)
        shutil.rmtree(root / "val")
    elif layout == "extra_val_class":
        make_folder(root, split=True)
        make_folder(tmp_path / "g", classes=4, split=True)
        shutil.copytree(tmp_path / "g" / "val" / "class3", root / "val" / "class3")
    elif layout == "one_each":
        make_folder(root, per_class=1)
    with pytest.raises(LthError, match=message):
        sources.load_config(cfg_for(f"imagefolder:{root}"))


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_bad_images_fail_naming_the_file_or_are_skipped(tmp_path, loader, caplog):
    root = make_folder(tmp_path / "f", split=True)
    bad = break_image(root / "train" / "class1" / "img01.png")
    with pytest.raises(LthError, match=f"image {bad} does not decode.*--bad-images skip"):
        sources.load_config(cfg_for(f"imagefolder:{root}", loader=loader))
    ds = sources.load_config(cfg_for(f"imagefolder:{root}", loader=loader, bad_images="skip"))
    assert len(ds.train_y) == 11 and str(bad) in caplog.text


def test_bad_image_on_the_cli_exits_2_and_writes_nothing(tmp_path, capsys):
    root = make_folder(tmp_path / "f", split=True)
    break_image(root / "val" / "class2" / "img03.png")
    argv = ["--preset", "quick", "--dataset", f"imagefolder:{root}", "--image-size", "8",
            "--runs-root", str(tmp_path / "runs"), "--no-progress", "--device", "cpu"]
    for extra in ([], ["--loader", "stream"]):
        assert cli_main(run.main, argv + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: image ") and "img03.png" in err and len(err.splitlines()) == 1
    for bad in (["--dataset", f"imagefolder:{tmp_path / 'nowhere'}"], ["--dataset", "imagefolder:"],
                ["--dataset", "nosuchmod.sub:make"], ["--dataset", "no-such-name"],
                ["--dataset", f"imagefolder:{root}", "--image-size", "0"]):
        assert cli_main(run.main, argv + bad) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_auto_streams_what_does_not_fit(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "f", split=True)
    assert isinstance(sources.load_config(cfg_for(f"imagefolder:{root}")), Dataset)
    monkeypatch.setattr(sources, "MEMORY_FRACTION", 1e-12)
    streamed = sources.load_config(cfg_for(f"imagefolder:{root}"))
    assert isinstance(streamed, StreamDataset) and len(streamed.train_y) == 12
    image, label = streamed.train_x[5]
    assert image.shape == (3, 8, 8) and label == streamed.train_y[5]


def test_imagenet_layouts(tmp_path):
    # The prepared layout: imagenet/train/<wnid>, imagenet/val/<wnid>.
    make_folder(tmp_path / "a" / "imagenet", classes=2, split=True)
    ds = sources.load_config(cfg_for("imagenet", data_dir=str(tmp_path / "a")))
    assert ds.num_classes == 2 and len(ds.train_y) == 8 and len(ds.test_y) == 4
    # The ILSVRC release: CLS-LOC/train/<wnid>, a flat val/ and LOC_val_solution.csv.
    root = tmp_path / "b" / "imagenet"
    cls_loc = root / "ILSVRC" / "Data" / "CLS-LOC"
    make_folder(cls_loc / "train", classes=2)
    (cls_loc / "val").mkdir(parents=True)
    rows = []
    for i, wnid in enumerate(["class1", "class0", "class1"]):
        name = f"ILSVRC2012_val_{i:08d}"
        shutil.copy(next((cls_loc / "train" / "class0").glob("*.png")), cls_loc / "val" / f"{name}.JPEG")
        rows.append({"ImageId": name, "PredictionString": f"{wnid} 1 2 3 4"})
    with open(root / "LOC_val_solution.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["ImageId", "PredictionString"])
        writer.writeheader()
        writer.writerows(rows)
    ds = sources.load_config(cfg_for("imagenet", data_dir=str(tmp_path / "b")))
    assert ds.test_y.tolist() == [1, 0, 1] and len(ds.train_y) == 12
    with pytest.raises(LthError, match="dataset imagenet not found"):
        sources.load_config(cfg_for("imagenet", data_dir=str(tmp_path / "c")))


@pytest.fixture
def data_module(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "import torch\n"
        "class Images(torch.utils.data.Dataset):\n"
        "    classes = ['a', 'b', 'c']\n"
        "    def __init__(self, n): self.n = n\n"
        "    def __len__(self): return self.n\n"
        "    def __getitem__(self, i):\n"
        "        g = torch.Generator().manual_seed(i)\n"
        "        return torch.rand(1, 12, 10, generator=g), i % 3\n"
        "class Text(torch.utils.data.Dataset):\n"
        "    def __init__(self, n): self.n = n\n"
        "    def __len__(self): return self.n\n"
        "    def __getitem__(self, i): return torch.arange(1, 2 + i % 5), i % 2\n"
        "def images(data_dir, image_size): return Images(20), Images(6)\n"
        "def text(data_dir, image_size): return Text(10), Text(4)\n"
        "def broken(data_dir, image_size): raise OSError('disk on fire')\n"
        "def wrong(data_dir, image_size): return [1, 2]\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_factory_datasets(data_module, monkeypatch):
    ds = sources.load_config(cfg_for("mydata:images"))
    assert ds.num_classes == 3 and ds.train_x.shape == (20, 1, 8, 8) and ds.train_x.dtype == torch.uint8
    text = sources.load_config(cfg_for("mydata:text"))
    assert text.train_x.shape == (10, 5) and text.train_x.dtype == torch.int64 and text.num_classes == 2
    assert text.train_x[0].tolist() == [1, 0, 0, 0, 0]                  # padded with 0
    monkeypatch.setattr(sources, "MEMORY_FRACTION", 1e-12)
    streamed = sources.load_config(cfg_for("mydata:images"))
    assert isinstance(streamed, StreamDataset) and torch.equal(streamed.train_x[3][0], ds.train_x[3])


@pytest.mark.parametrize("name, message", [("mydata:broken", "failed: OSError: disk on fire"),
                                           ("mydata:wrong", "must return \\(train, test\\) torch Datasets"),
                                           ("mydata:nothing", "has no function 'nothing'")])
def test_bad_factories(data_module, name, message):
    with pytest.raises(LthError, match=message):
        sources.load_config(cfg_for(name))
