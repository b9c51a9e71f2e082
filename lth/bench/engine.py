"""What lth.bench measures: lth's own data, models, masks and training step, and the usual alternatives.

The training step is built from lth's parts (lth.lottery.assemble.build_model, lth.training.loop.make_optimizer with the
resolved paper recipe, lth.training.loop.train_step and lr_at, lth.pruning.masks.Masks, lth.data.loader.DeviceLoader), so
what is timed is the engine that `python -m lth.run` runs.
"""
import logging
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from lth.lottery import assemble
from lth.config import RunConfig
from lth.data.datasets import Dataset, load
from lth.data.loader import DeviceLoader
from lth.errors import LthError
from lth.pruning.masks import Masks
from lth.pruning import prune
from lth.training.loop import Loop, make_loaders

log = logging.getLogger("lth.bench")

SPARSITY = 0.9                              # "masked" rows: every conv/linear weight pruned to 90 % (local L1)
AUGMENT = "crop_flip"                       # the CIFAR augmentation of lth's paper32/openlth presets
DEFAULT_DATA_DIRS = ("data",)  # searched for cifar-10-batches-py when --data-dir is not given
SYNTHETIC_SEED = 1234                       # seed of the synthetic images and labels


# ---- data --------------------------------------------------------------------------------

def synthetic_cifar(train: int, test: int) -> Dataset:
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    x = torch.randint(0, 256, (train + test, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (train + test,), generator=g)
    return Dataset("synthetic-cifar10", x[:train], y[:train], x[train:], y[train:], num_classes=10)


def load_data(data_dir: Optional[str], synthetic: bool, synthetic_size: Tuple[int, int]) -> Tuple[Dataset, str]:
    """CIFAR-10 from --data-dir (else the first of DEFAULT_DATA_DIRS holding it), else synthetic."""
    if not synthetic:
        candidates = [data_dir] if data_dir else list(DEFAULT_DATA_DIRS)
        for folder in candidates:
            if (Path(folder).expanduser() / "cifar-10-batches-py").is_dir():
                ds = load("cifar10", folder)
                return ds, f"CIFAR-10 from {folder} ({len(ds.train_y)} train, {len(ds.test_y)} test images)"
        if data_dir:
            raise LthError(f"--data-dir {data_dir} holds no cifar-10-batches-py; point it at a CIFAR-10 copy "
                           f"or pass --synthetic")
        log.info("no CIFAR-10 under %s: using synthetic CIFAR-sized data", " or ".join(candidates))
    train, test = synthetic_size
    return synthetic_cifar(train, test), f"synthetic CIFAR-sized data ({train} train, {test} test images, seeded)"


def cycle(loader) -> Iterator:
    """Batches forever, one epoch after another."""
    while True:
        yield from loader


# ---- models and steps --------------------------------------------------------------------

def run_config(model_name: str, batch_size: int, bf16: bool = True) -> RunConfig:
    """lth's default run at CIFAR's own 32x32 with crop_flip (the paper32 preset), resolved."""
    cfg = RunConfig()
    cfg.model.model = model_name
    cfg.data.image_size = 0
    cfg.data.augment = AUGMENT
    cfg.train.batch_size = batch_size
    cfg.train.bf16 = bf16
    return cfg.resolved()


def build_model(cfg: RunConfig, dataset: Dataset, device: torch.device) -> nn.Module:
    """Seeded as a run builds it (lth.lottery.assemble; channels_last when the config says so)."""
    return assemble.build_model(cfg, dataset, cfg.seeds.init_seed, device)


def train_loader(cfg: RunConfig, dataset: Dataset, device: torch.device) -> DeviceLoader:
    return make_loaders(dataset, cfg.train, device, 32, AUGMENT, cfg.seeds.order_seed, cfg.seeds.augment_seed)[0]


def model_maker(cfg: RunConfig, dataset: Dataset, device: torch.device, shared: bool,
                compile: bool) -> Callable[[str], Tuple[nn.Module, Callable]]:
    """A function mode ("eager" or "compiled") -> (model, forward).

    shared=True: one model, and one torch.compile of it, for every call, restored to its initial
    weights each time (for rows measured one after another); shared=False: a new model, and a
    new compile, per call (for rows alive together).
    """
    if not shared:
        def fresh(mode: str):
            model = build_model(cfg, dataset, device)
            return model, (try_compile(model) if mode == "compiled" else model)
        return fresh
    model = build_model(cfg, dataset, device)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    compiled = try_compile(model) if compile else None

    def restored(mode: str):
        model.load_state_dict(init)
        return model, (compiled if mode == "compiled" else model)
    return restored


def masked(model: nn.Module, sparsity: float = SPARSITY) -> Masks:
    """lth masks over every conv/linear weight at `sparsity` (local L1), already enforced."""
    masks = Masks.for_model(model)
    prune(masks, sparsity)
    masks.enforce()
    return masks


class EngineStep:
    """One training step exactly as the one loop takes it (lth.training.loop.Loop.optimizer_step:
    LR and momentum from the schedule, train_step), fed batches from outside; statistics stay
    on the device."""

    def __init__(self, model: nn.Module, cfg: RunConfig, device: torch.device, masks: Optional[Masks] = None,
                 forward: Optional[Callable] = None, total: int = 10 ** 6):
        self.loop = Loop(model.to(device), cfg.train, None, None, masks=masks, forward=forward, total=total)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        model.train()

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.loop.optimizer

    @property
    def step(self) -> int:
        return self.loop.step

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.loop.step %= self.loop.total   # past the horizon the schedule starts over
        loss, logits = self.loop.optimizer_step(x, y)
        self.loss_sum += loss * len(y)
        self.correct += (logits.argmax(1) == y).sum()


def prune_with_hooks(model: nn.Module, masks: Optional[Masks] = None, sparsity: float = SPARSITY) -> None:
    """Mask the same conv/linear weights through torch.nn.utils.prune's forward pre-hooks:
    lth's masks via custom_from_mask, or (masks=None) prune.l1_unstructured as research code does."""
    from torch.nn.utils import prune
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    if masks is not None:
        by_weight = {id(p): m for p, m in zip(masks.params, masks.tensors)}
        for layer in layers:
            prune.custom_from_mask(layer, "weight", by_weight[id(layer.weight)])
    else:
        for layer in layers:
            prune.l1_unstructured(layer, "weight", amount=sparsity)


def count_training_flops(model_name: str, dataset: Dataset) -> float:
    """FLOP of forward + backward per image (FlopCounterMode on the meta device: no compute)."""
    from torch.utils.flop_counter import FlopCounterMode
    from lth import models
    batch = 2
    with torch.device("meta"):
        model = models.build(model_name, dataset.num_classes, dataset.in_channels, 32)
        x = torch.zeros(batch, dataset.in_channels, 32, 32)
        y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def try_compile(model: nn.Module) -> Callable:
    """torch.compile(model), compiled lazily at its first call (callers catch failures there)."""
    return torch.compile(model)
