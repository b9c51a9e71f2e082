"""Interpolating between two networks in place, and recomputing BatchNorm statistics.

The primitives the stability analysis (analysis.interpolate) and lth.bench share:

    tensors = floating_tensors(probe)          # parameters and BN statistics, sharing storage
    lerp_into(tensors, a, b, alpha)            # probe <- alpha * a + (1 - alpha) * b
    recompute_batchnorm(probe, forward, batches, device, bf16)   # BN stats of the new network

torch.lerp computes `end - (end - start) * (1 - w)` for w >= 0.5 and `start + w * (end - start)`
below, so alpha = 1 gives `a` and alpha = 0 gives `b` bit for bit.
"""
from typing import Callable, Iterable, List, Sequence

import torch
from torch import nn

from lth.training.loop import autocast

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, BATCHNORM_TYPES) for m in model.modules())


def floating_tensors(model: nn.Module) -> List[torch.Tensor]:
    """The model's float parameters and buffers (weights, biases, BatchNorm running stats), in
    state-dict order, as tensors sharing the model's storage (num_batches_tracked is skipped)."""
    return [t for t in model.state_dict().values() if t.is_floating_point()]


@torch.no_grad()
def lerp_into(probe: Sequence[torch.Tensor], a: Sequence[torch.Tensor], b: Sequence[torch.Tensor],
              alpha: float) -> None:
    """probe <- alpha * a + (1 - alpha) * b, in place, two multi-tensor ops."""
    torch._foreach_copy_(list(probe), list(b))
    torch._foreach_lerp_(list(probe), list(a), alpha)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, forward: Callable, batches: Iterable, device: torch.device,
                        bf16: bool) -> int:
    """Replace every BatchNorm's running stats by their exact average over `batches` ((x, y)
    pairs) in train mode; returns the number of images used."""
    norms = [m for m in model.modules() if isinstance(m, BATCHNORM_TYPES)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
    was_training, seen = model.training, 0
    model.train()
    with autocast(device, bf16):
        for x, _ in batches:
            forward(x)
            seen += len(x)
    model.train(was_training)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return seen
