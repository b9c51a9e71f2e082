"""The device-resident loader: one split held whole on the device, batched augmentation there.

    ds = lth.data.datasets.load("digits")
    loader = DeviceLoader(ds.train_x, ds.train_y, ds, batch_size=128, device="cpu",
                          train=True, augment="crop_flip", image_size=32,
                          order_seed=1, augment_seed=2)
    for x, y in loader: ...                                 # one epoch

The data order and the augmentation draw from two private generators, so two copies of a
ticket can differ in exactly those two sources of SGD noise (analysis.stability).

Data-parallel ranks (issue 22, lth.training.distributed) pass `shard=(rank, world)`: every rank
draws the same global order and the augmentation of the whole global batch, and yields only
its slice of batch_size / world images, so the batches and augmentations the ranks see
together are exactly those of one process, whatever the world size.
"""
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from lth.data import augment
from lth.data.datasets import Dataset
from lth.errors import LthError

AUGMENTATIONS = ("none", "crop_flip", "fastai")
CROP_PADDING = 4          # crop_flip: pixels of zero padding before the random crop (CIFAR standard)


class DeviceLoader:
    """Batches of one split, held whole on `device`; one pass of iteration is one epoch.

    train=True: reshuffles every epoch (order generator) and augments (augment generator);
    train=False: fixed order, no augmentation, the last partial batch kept.
    Yields (float images normalised by the dataset's mean/std, int64 labels).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, dataset: Dataset, batch_size: int, device,
                 train: bool, augment: str = "none", image_size: Optional[int] = None,
                 order_seed: int = 0, augment_seed: int = 0, channels_last: bool = False,
                 shard: Optional[Tuple[int, int]] = None):
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
        # (rank, world): yield this rank's slice of every training batch (None: the whole batch)
        self.shard = shard if train and shard is not None and shard[1] > 1 else None
        if self.shard is not None and (batch_size % self.shard[1] or not 0 <= self.shard[0] < self.shard[1]):
            raise LthError(f"batch size {batch_size} does not split into {self.shard[1]} equal slices")
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

    def start_epoch(self):
        """This epoch's order (a fresh shuffle from the order generator when training) and the
        first batch to hand out (after a restored mid-epoch position or a seek: later than 0)."""
        n = len(self.y)
        self.epoch_order_state = self.order_generator.get_state()
        if self.train:
            order = torch.randperm(n, generator=self.order_generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        first, self.skip = self.skip, 0  # skipped batches are neither augmented nor yielded
        return order, first

    def __iter__(self):
        order, first = self.start_epoch()
        for i in range(first, len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            if self.shard is None:
                batch = self.transform(self.x[index]), self.y[index]
            else:  # draw the global batch's augmentation, keep this rank's slice of it
                part = self.slice_of(len(index))
                batch = self.transform(self.x[index[part]], part, len(index)), self.y[index[part]]
            self.consumed = i + 1
            yield batch

    def every_nth(self, rank: int, world: int):
        """Evaluation split over data-parallel ranks (lth.training.loop.evaluate): (number, batch)
        for batches rank, rank + world, ... of the fixed order, the others neither built nor yielded.
        The batches are exactly those one process's iteration yields under the same numbers."""
        if self.train:
            raise LthError("every_nth splits an evaluation loader; training loaders take shard=(rank, world)")
        order = torch.arange(len(self.y), device=self.device)
        for i in range(rank, len(self), world):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield i, (self.transform(self.x[index]), self.y[index])

    def slice_of(self, n: int) -> slice:
        """This rank's part of a global batch of n images."""
        rank, world = self.shard
        size = n // world
        return slice(rank * size, (rank + 1) * size)

    def transform(self, images: torch.Tensor, part: Optional[slice] = None, drawn: int = 0) -> torch.Tensor:
        """uint8 batch -> augmented, resized, normalised float batch; token ids pass unchanged
        (issue 21: text). part, drawn: the images are `part` of a global batch of `drawn`, whose
        random draws are all made (data-parallel ranks)."""
        if images.dtype != torch.uint8:
            return images
        x = images.float().div_(255.0)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if self.augment == "crop_flip":
            x = self._crop_flip(x, part, drawn)
        elif self.augment == "fastai":
            x = self._fastai(x, part, drawn)
        x = (x - self.mean) / self.std
        # The crop gather leaves channels-last strides: make the layout explicit either way
        # (a channels-last batch into an NCHW model cost resnet20 on CPU 0.76x, lth.bench).
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def _crop_flip(self, x: torch.Tensor, part: Optional[slice] = None, drawn: int = 0) -> torch.Tensor:
        """Random crop after zero padding, then random horizontal flip: batched gathers."""
        b, _, h, w = x.shape
        p = CROP_PADDING
        padded = F.pad(x, (p, p, p, p))
        n = drawn or b
        dy = torch.randint(0, 2 * p + 1, (n,), generator=self.augment_generator, device=self.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=self.augment_generator, device=self.device)
        flip = torch.rand(n, generator=self.augment_generator, device=self.device) < 0.5
        if part is not None:
            dy, dx, flip = dy[part], dx[part], flip[part]
        rows = dy[:, None] + torch.arange(h, device=self.device)                      # (b, h)
        cols = dx[:, None] + torch.arange(w, device=self.device)                      # (b, w)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        batch = torch.arange(b, device=self.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _fastai(self, x: torch.Tensor, part: Optional[slice] = None, drawn: int = 0) -> torch.Tensor:
        """fastai's aug_transforms() defaults (lth.data.augment): flip, then rotation, zoom and warp
        each with probability 0.75 in one resampling, then brightness and contrast (each 0.75)."""
        params = augment.draw(drawn or len(x), self.augment_generator, self.device)
        if part is not None:
            params = {k: v[part] for k, v in params.items()}
        return augment.apply(x, params)

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
