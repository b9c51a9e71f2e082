"""The streaming loader: DeviceLoader's batches for a dataset that does not fit in device memory.

    loader = make_loader(dataset.train_x, dataset.train_y, dataset, batch_size=256, device=device,
                         train=True, augment="crop_flip", image_size=224, order_seed=1, augment_seed=2)
    for x, y in loader: ...      # DeviceLoader's interface: len, state_dict(position), seek, ...

`make_loader` gives a DeviceLoader when the split is a tensor held in memory and a
`StreamingLoader` when it is a torch Dataset of images (a `StreamDataset`'s files,
lth.data.sources decides which). The streaming loader draws its order exactly as DeviceLoader
does (torch.randperm on the order generator, on the device), has DataLoader workers decode the
epoch's batches in that order on the CPU (pinned memory on CUDA, copied without blocking), and
augments, resizes and normalises each batch on the device with DeviceLoader's own transform and
augmentation generator. So for the same seeds it yields the very batches a DeviceLoader over
the decoded images would (tests/test_streaming.py: bit for bit on the CPU), and its
state_dict(position=True) resumes mid-epoch exactly as DeviceLoader's does: the epoch's
shuffle is replayed and the batches already handed out are skipped without being decoded.
With --decode device the workers only read the files and this process decodes each batch on
the device (lth.data.device_decode); order, augmentation and resume are unchanged.
"""
import functools
import logging
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch.utils.data import DataLoader

from lth.data.datasets import Normalised, channel_stats
from lth.data.loader import DeviceLoader
from lth.data.folders import bad_message
from lth.errors import LthError

log = logging.getLogger(__name__)

PREFETCH_BATCHES = 4    # batches each worker decodes ahead (DataLoader's prefetch_factor)
STATS_IMAGES = 256      # training images (evenly spaced) the normalisation statistics are computed from


def usable_workers(workers: int) -> int:
    """`workers`, or 0 inside a daemonic process (a study's local worker): those may not start
    DataLoader worker processes, so the images are decoded in the process itself."""
    import multiprocessing
    return 0 if multiprocessing.current_process().daemon else workers


def default_workers() -> int:
    """DataLoader workers when --workers is 0: one per core this process may use, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@dataclass
class StreamDataset(Normalised):
    """A dataset whose images stay on disk: the interface of lth.data.datasets.Dataset, with
    train_x / test_x torch Datasets of (uint8 (C, S, S), label) instead of tensors. Labels are
    held in memory (ImageNet: 10 MB)."""
    name: str
    train_x: torch.utils.data.Dataset
    train_y: torch.Tensor
    test_x: torch.utils.data.Dataset
    test_y: torch.Tensor
    num_classes: int
    size: int
    workers: int = 0          # 0: default_workers()
    channels: int = 3

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def native_size(self) -> int:
        return self.size

    def to(self, device) -> "StreamDataset":
        """Labels to `device`; the images stay where they are (the loader streams them)."""
        moved = StreamDataset(self.name, self.train_x, self.train_y.to(device), self.test_x, self.test_y.to(device),
                              self.num_classes, self.size, self.workers, self.channels)
        moved.__dict__["stats"] = self.stats
        return moved

    @functools.cached_property
    def stats(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std in [0, 1] from STATS_IMAGES evenly spaced training images
        (the same ones on every machine)."""
        n = len(self.train_y)
        picks = sorted({int(i) for i in torch.linspace(0, n - 1, min(n, STATS_IMAGES))})
        items = [self.train_x[i] for i in picks]
        decoder = getattr(self.train_x, "decode_items", None)   # --decode device: the pixels the run trains on
        images = [image.cpu() if torch.is_tensor(image) else image
                  for image in (decoder(items) if decoder else [item[0] for item in items])]
        for image in images:
            if isinstance(image, str):
                raise LthError(bad_message(image))
        return channel_stats(torch.stack(images))


def _collate(items):
    """A batch of decoded images, or the path of the first file that did not decode."""
    for image, _ in items:
        if isinstance(image, str):
            return image
    return torch.stack([image for image, _ in items])


class StreamingLoader(DeviceLoader):
    """DeviceLoader over images decoded by DataLoader workers (module docstring)."""

    def __init__(self, images: torch.utils.data.Dataset, y: torch.Tensor, dataset, batch_size: int, device,
                 train: bool, augment: str = "none", image_size: Optional[int] = None, order_seed: int = 0,
                 augment_seed: int = 0, channels_last: bool = False, workers: int = 0,
                 shard: Optional[Tuple[int, int]] = None):
        # DeviceLoader's checks, generators, position and rank slice, with no images held (x is empty).
        super().__init__(torch.empty(0, dtype=torch.uint8), y, dataset, batch_size, device, train, augment,
                         image_size, order_seed, augment_seed, channels_last, shard)
        if len(images) != len(y):
            raise LthError(f"{dataset.name}: {len(images)} images but {len(y)} labels")
        self.images = images
        self.workers = workers or default_workers()

    def __iter__(self):
        order, first = self.start_epoch()   # skipped batches are neither decoded, augmented nor yielded
        order_cpu = order.cpu()
        # each rank decodes only its slice of a global batch (issue 22); the draws stay global
        part = self.slice_of(self.batch_size) if self.shard is not None else slice(None)
        batches = [order_cpu[i * self.batch_size:(i + 1) * self.batch_size][part].tolist()
                   for i in range(first, len(self))]
        for i, images in enumerate(self._decoded(batches), start=first):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            if self.shard is None:
                batch = self.transform(images), self.y[index]
            else:
                batch = self.transform(images, part, len(index)), self.y[index[part]]
            self.consumed = i + 1
            yield batch

    def every_nth(self, rank: int, world: int):
        """DeviceLoader.every_nth: the other ranks' batches are not decoded either."""
        if self.train:
            raise LthError("every_nth splits an evaluation loader; training loaders take shard=(rank, world)")
        numbers = range(rank, len(self), world)
        batches = [list(range(i * self.batch_size, min((i + 1) * self.batch_size, len(self.y)))) for i in numbers]
        for i, images in zip(numbers, self._decoded(batches)):
            yield i, (self.transform(images), self.y[i * self.batch_size:(i + 1) * self.batch_size])

    def _decoded(self, batches):
        """The images of each list of indices, decoded by the workers, on the device."""
        if not batches:
            return
        workers = usable_workers(min(self.workers, len(batches)))
        # --decode device (lth.data.device_decode): workers read bytes, this process decodes them on
        # the device; the bytes go to the decoder from host memory, so pinning them gains nothing
        decode = getattr(self.images, "decode_batch", None)
        loader = DataLoader(self.images, batch_sampler=batches, num_workers=workers,
                            collate_fn=self.images.collate if decode else _collate,
                            pin_memory=self.device.type == "cuda" and decode is None,
                            prefetch_factor=PREFETCH_BATCHES if workers > 0 else None)
        for images in loader:
            if decode is not None:
                images = decode(images)
            if isinstance(images, str):
                raise LthError(bad_message(images))
            yield images.to(self.device, non_blocking=True)

def make_loader(x, y: torch.Tensor, dataset, batch_size: int, device, train: bool, augment: str = "none",
                image_size: Optional[int] = None, order_seed: int = 0, augment_seed: int = 0,
                channels_last: bool = False, shard: Optional[Tuple[int, int]] = None):
    """A DeviceLoader for a split held as a tensor; a StreamingLoader for one held as files.
    shard: (rank, world) of a data-parallel run (lth.training.distributed)."""
    if torch.is_tensor(x):
        return DeviceLoader(x, y, dataset, batch_size, device, train, augment, image_size, order_seed, augment_seed,
                            channels_last, shard)
    return StreamingLoader(x, y, dataset, batch_size, device, train, augment, image_size, order_seed, augment_seed,
                           channels_last, workers=getattr(dataset, "workers", 0), shard=shard)
