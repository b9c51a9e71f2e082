"""Datasets beyond the built-in five: image folders, ImageNet, and any factory of torch Datasets.

    python -m lth.run --dataset imagefolder:/data/birds --image-size 64 ...
    python -m lth.run --dataset imagenet --data-dir /data --image-size 224 --loader stream ...
    python -m lth.run --dataset my_pkg.data:make ...
    python -m lth.run --dataset glue:sst2 --tokenizer bert-base-uncased ...      # lth.data.text

    dataset = sources.load_config(cfg)      # what lth.lottery.assemble.load_data calls

Names (`check`): the built-in datasets (lth.data.datasets); `imagefolder:DIR` and `imagenet`
(lth.data.folders); `glue:TASK` and `hf-text:SOURCE`, text through Hugging Face datasets and a
tokenizer (lth.data.text); `MODULE:FUNCTION`, a factory `FUNCTION(data_dir, image_size)` returning
`(train, test)` torch Datasets whose items are `(image, label)`: image a PIL image, a uint8
(C, H, W) tensor or a float one in [0, 1] (an image dataset), or a 1-d int64 tensor of token ids
(a text dataset, id 0 = padding; held in memory, padded to the longest). Labels come from the
dataset's `targets` when it has them (torchvision's convention), else from one pass over it;
the number of classes from `classes`, else the largest label + 1.

Held in memory or streamed (--loader): `auto` decodes the images into memory (the fast
DeviceLoader, lth.data.loader) when they fit in MEMORY_FRACTION of the device's free memory (the
host's RAM on a CPU) at the run's image size, else streams them (lth.data.streaming);
`memory` / `stream` force one. Both give the same batches for the same seeds.

Where JPEGs are decoded (--decode): `cpu` (default) by PIL in DataLoader workers; `device` by
torchvision on the run's device, the workers only reading the files (lth.data.device_decode).
The resize differs (PIL's fixed point against float32 on the device: pixels within 1), so the
choice is part of the run's hash, unlike --loader.

Bad images (--bad-images): `fail` (default) stops with one line naming the file before
anything is written; `skip` leaves such files out, named in the log. In memory every image is
decoded first; streamed, every file's header is read first (a file whose header reads but whose
pixels do not decode is still named in one line when a batch reaches it).
"""
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Tuple

import torch

from lth.data import datasets, folders, text
from lth.data.datasets import Dataset
from lth.data.device_decode import EncodedFiles, check_decoder, square
from lth.data.streaming import StreamDataset, default_workers, usable_workers
from lth.errors import LthError
from lth.factories import import_callable

log = logging.getLogger(__name__)

LOADERS = ("auto", "memory", "stream")
BAD_IMAGES = ("fail", "skip")
DECODES = ("cpu", "device")   # where JPEGs are decoded (lth.data.device_decode); hashed: the pixels differ
MEMORY_FRACTION = 0.5      # of free device memory (host RAM on a CPU) the decoded images may take
SCAN_THREADS = 16          # threads reading image headers before a streamed run
DECODE_BATCH = 64          # images a worker decodes at a time when filling memory
FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")


def is_source(name: str) -> bool:
    """Whether `name` is handled here rather than by the built-in registry."""
    return name == "imagenet" or ":" in name


def check(name: str) -> None:
    """A one-line error for a dataset name that can never load (before any data is read)."""
    if name in datasets.DATASETS or name == "imagenet":
        return
    prefix, _, rest = name.partition(":")
    if prefix == "imagefolder":
        if not rest:
            raise LthError("--dataset imagefolder:DIR needs a folder after 'imagefolder:'")
        return
    if text.is_text(name):   # before factories: glue:sst2 reads like MODULE:FUNCTION
        text.check(name)
        return
    if ":" in name and FACTORY.match(name):
        _factory(name)
        return
    raise LthError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(datasets.DATASETS))}, imagenet, "
                   f"imagefolder:DIR, glue:TASK, hf-text:SOURCE, or MODULE:FUNCTION returning torch Datasets")


def is_text(name: str) -> bool:
    """glue:TASK and hf-text:SOURCE: token ids from a tokenizer (lth.data.text)."""
    return text.is_text(name)


def sep_token_id(d):
    """The [SEP] id of a text DataConfig's tokenizer, when it returns token types (BERT's do)."""
    from lth.data.tokenizer import sep_token_id as sep
    return sep(d.tokenizer)


def load_config(cfg, data_dir=None, device=None):
    """The dataset of a run config (cfg.data, cfg.runtime.device), in memory or streamed."""
    d = cfg.data
    data_dir = data_dir or d.data_dir
    if not is_source(d.dataset):
        return datasets.load(d.dataset, data_dir, d.download, d.split_seed)
    check(d.dataset)
    if text.is_text(d.dataset):
        return text.load(d if data_dir == d.data_dir else _with_data_dir(d, data_dir))
    device = device or cfg.runtime.device
    loader, workers, bad = getattr(d, "loader", "auto"), getattr(d, "workers", 0), getattr(d, "bad_images", "fail")
    decode = getattr(d, "decode", "cpu")
    if d.dataset.startswith("imagefolder:") or d.dataset == "imagenet":
        if not d.image_size:
            raise LthError(f"dataset {d.dataset}: images come in many sizes; give --image-size (e.g. 32, 224)")
        if d.dataset == "imagenet":
            train, test, classes = folders.scan_imagenet(Path(data_dir).expanduser())
        else:
            train, test, classes = folders.scan_imagefolder(Path(d.dataset.partition(":")[2]).expanduser(),
                                                            d.split_seed or 0)
        return _from_files(d.dataset, train, test, len(classes), d.image_size, loader, workers, bad, device, decode)
    return _from_factory(d.dataset, str(Path(data_dir).expanduser()), d.image_size, loader, workers, device)


def facts(cfg) -> Tuple[int, int, int, int, int]:
    """(train images, test images, classes, channels, image size) without decoding any image:
    a folder or ImageNet is scanned, a factory's datasets are built (what a --dry-run reads)."""
    d = cfg.data
    if text.is_text(d.dataset):
        return text.facts(d)
    if d.dataset.startswith("imagefolder:") or d.dataset == "imagenet":
        if d.dataset == "imagenet":
            train, test, classes = folders.scan_imagenet(Path(d.data_dir).expanduser())
        else:
            train, test, classes = folders.scan_imagefolder(Path(d.dataset.partition(":")[2]).expanduser(),
                                                            d.split_seed or 0)
        return len(train), len(test), len(classes), 3, d.image_size
    ds = load_config(cfg)
    return len(ds.train_y), len(ds.test_y), ds.num_classes, ds.in_channels, ds.native_size


def _with_data_dir(d, data_dir: str):
    import dataclasses
    return dataclasses.replace(d, data_dir=data_dir)


# ---- memory or stream ---------------------------------------------------------------------

def memory_budget(device) -> int:
    """Bytes the decoded dataset may take on `device` (MEMORY_FRACTION of what is free)."""
    import os
    from lth.training.device import pick_device
    device = pick_device(str(device))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * MEMORY_FRACTION)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") * MEMORY_FRACTION)


def _streams(loader: str, n_images: int, channels: int, size: int, device) -> bool:
    if loader not in LOADERS:
        raise LthError(f"unknown --loader {loader!r}; choose one of {', '.join(LOADERS)}")
    if loader != "auto":
        return loader == "stream"
    need, budget = n_images * channels * size * size, memory_budget(device)
    if need > budget:
        log.info("%d images at %d px take %.1f GB, more than the %.1f GB budget: streaming them", n_images, size,
                 need / 1e9, budget / 1e9)
        return True
    return False


def _files_dataset(files, size: int, decode: str, device):
    """The files as a Dataset: decoded by PIL in the workers (cpu), or read there and decoded on
    the device (lth.data.device_decode)."""
    return folders.ImageFiles(files, size) if decode == "cpu" else EncodedFiles(files, size, device)


def _from_files(name, train, test, num_classes, size, loader, workers, bad, device, decode="cpu"):
    if bad not in BAD_IMAGES:
        raise LthError(f"unknown --bad-images {bad!r}; choose one of {', '.join(BAD_IMAGES)}")
    if decode not in DECODES:
        raise LthError(f"unknown --decode {decode!r}; choose one of {', '.join(DECODES)}")
    if decode == "device":
        from lth.training.device import pick_device
        device = pick_device(str(device))
        check_decoder(device)   # before any file is read: a torchvision without nvJPEG is one line
    if _streams(loader, len(train) + len(test), 3, size, device):
        train, test = _check_headers(train, bad), _check_headers(test, bad)
        split = [_files_dataset(train, size, decode, device), _files_dataset(test, size, decode, device)]
        _check_not_empty(name, train, test)
        return StreamDataset(name, split[0], split[0].labels(), split[1], split[1].labels(), num_classes, size, workers)
    (train_x, train_y), (test_x, test_y) = (_decode_all(_files_dataset(files, size, decode, device), bad, workers, size)
                                            for files in (train, test))
    _check_not_empty(name, train_y, test_y)
    return Dataset(name, train_x, train_y, test_x, test_y, num_classes)


def _check_not_empty(name, train, test) -> None:
    if len(train) == 0 or len(test) == 0:
        raise LthError(f"dataset {name}: no {'training' if len(train) == 0 else 'test'} images left")


def _check_headers(files: folders.Files, bad: str) -> folders.Files:
    """Read every file's header (threads: the cost is the disk's latency); fail or skip bad ones."""
    from PIL import Image

    def ok(item) -> bool:
        try:
            with Image.open(item[0]):
                return True
        except Exception:  # PIL raises many types for a broken file
            return False

    with ThreadPoolExecutor(SCAN_THREADS) as pool:
        flags = list(pool.map(ok, files))
    return _apply_policy(files, flags, bad)


def _apply_policy(files: List, good: List[bool], bad: str) -> List:
    broken = [f[0] for f, g in zip(files, good) if not g]
    if broken and bad == "fail":
        raise LthError(folders.bad_message(broken[0], f"{len(broken)} such file{'s' if len(broken) > 1 else ''}"))
    if broken:
        log.warning("--bad-images skip: left out %d file(s) that do not decode: %s%s", len(broken),
                    ", ".join(broken[:5]), ", ..." if len(broken) > 5 else "")
    return [f for f, g in zip(files, good) if g]


def _decode_all(images, bad: str, workers: int, size: int):
    """Every image decoded (DataLoader workers; with --decode device, read by them and decoded
    here on the device a batch at a time), as uint8 (N, 3, S, S) and int64 labels, on the CPU."""
    from torch.utils.data import DataLoader
    if len(images) == 0:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    workers = min(workers or default_workers(), max(1, len(images) // DECODE_BATCH))
    loader = DataLoader(images, batch_size=DECODE_BATCH, num_workers=usable_workers(workers if workers > 1 else 0),
                        collate_fn=list)
    if isinstance(images, EncodedFiles):
        items = [(image.cpu() if torch.is_tensor(image) else image, item[1])
                 for batch in loader for image, item in zip(images.decode_items(batch), batch)]
    else:
        items = [item for batch in loader for item in batch]
    good = [not isinstance(image, str) for image, _ in items]
    files = [(image if isinstance(image, str) else images.files[i][0], label) for i, (image, label) in enumerate(items)]
    _apply_policy(files, good, bad)
    kept = [(image, label) for (image, label), g in zip(items, good) if g]
    if not kept:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.stack([i for i, _ in kept]), torch.tensor([lab for _, lab in kept], dtype=torch.int64)


# ---- MODULE:FUNCTION ----------------------------------------------------------------------

def _factory(name: str):
    module_name = name.split(":")[0]
    return import_callable(name, "dataset factory", f"unknown dataset {name!r}: {module_name!r} is neither "
                                                    f"imagefolder nor an importable module")[1]


def _from_factory(name: str, data_dir: str, size: int, loader: str, workers: int, device):
    fn = _factory(name)
    try:
        made = fn(data_dir, size)
    except LthError:
        raise
    except Exception as e:
        raise LthError(f"dataset factory {name} failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}") from None
    if not (isinstance(made, (tuple, list)) and len(made) == 2
            and all(isinstance(d, torch.utils.data.Dataset) for d in made)):
        raise LthError(f"dataset factory {name} must return (train, test) torch Datasets, got {type(made).__name__}")
    train, test = made
    if len(train) == 0 or len(test) == 0:
        raise LthError(f"dataset factory {name}: the {'training' if len(train) == 0 else 'test'} split is empty")
    first, _ = train[0]
    train_y, test_y = _labels(train, name), _labels(test, name)
    num_classes = len(train.classes) if hasattr(train, "classes") else int(max(train_y.max(), test_y.max())) + 1
    if torch.is_tensor(first) and first.dim() == 1 and not first.is_floating_point():   # token ids: text
        return Dataset(name, _tokens(train, name), train_y, _tokens(test, name), test_y, num_classes)
    size = size or _image(first, 0, name).shape[-1]
    channels = _image(first, size, name).shape[0]
    wrapped = [FactoryImages(train, size, name), FactoryImages(test, size, name)]
    if _streams(loader, len(train) + len(test), channels, size, device):
        return StreamDataset(name, wrapped[0], train_y, wrapped[1], test_y, num_classes, size, workers, channels)
    xs = [torch.stack([w[i][0] for i in range(len(w))]) for w in wrapped]
    return Dataset(name, xs[0], train_y, xs[1], test_y, num_classes)


def _labels(ds, name: str) -> torch.Tensor:
    targets = getattr(ds, "targets", None)
    labels = list(targets) if targets is not None else [ds[i][1] for i in range(len(ds))]
    try:
        y = torch.as_tensor([int(v) for v in labels], dtype=torch.int64)
    except (TypeError, ValueError):
        raise LthError(f"dataset factory {name}: labels must be integers") from None
    if len(y) and int(y.min()) < 0:
        raise LthError(f"dataset factory {name}: labels must be >= 0, found {int(y.min())}")
    return y


def _tokens(ds, name: str) -> torch.Tensor:
    seqs = [ds[i][0] for i in range(len(ds))]
    length = max(len(s) for s in seqs)
    out = torch.zeros(len(seqs), length, dtype=torch.int64)   # 0: padding (lth.models.external.HF_PAD_TOKEN)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def _image(image, size: int, name: str) -> torch.Tensor:
    """An item's image as uint8 (C, S, S): PIL or tensor; shorter side to S, centre square (S = 0: as is)."""
    if not torch.is_tensor(image):
        try:
            import numpy as np
            array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        except Exception:
            raise LthError(f"dataset factory {name}: items must be (image, label) with a PIL image or a tensor, "
                           f"got {type(image).__name__}") from None
        image = torch.from_numpy(array.copy()).permute(2, 0, 1) if array.ndim == 3 else torch.from_numpy(array.copy())[None]
    if image.dim() != 3:
        raise LthError(f"dataset factory {name}: image tensors must be (C, H, W), got shape {tuple(image.shape)}")
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return square(image, size) if size else image


class FactoryImages(torch.utils.data.Dataset):
    """A factory's Dataset with its images as uint8 (C, S, S)."""

    def __init__(self, ds, size: int, name: str):
        self.ds, self.size, self.name = ds, size, name

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        image, label = self.ds[i]
        return _image(image, self.size, self.name), int(label)
