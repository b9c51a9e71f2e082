"""Evaluation split over data-parallel ranks (issue 22): each rank evaluates a disjoint share of
the test split's batches, and the per-batch results are all-reduced.

    from lth.training.loop import evaluate      # under torchrun it calls sharded_evaluate itself
    evaluate(forward, model, test_loader)       # every rank gets the same numbers

Rank r evaluates batches r, r + N, r + 2N, ... of the loader's fixed order (the same batches,
by number, as one process evaluates; lth.data.loader.DeviceLoader.every_nth). Each rank writes
its batches' loss sums and correct counts into a vector with one entry per batch, zeros
elsewhere; one SUM all-reduce fills every entry (x + 0 is exact), and the loss sums are then
added in batch order in float32, as one process's loop adds them. So the correct count, and
the accuracy, are identical to the unsharded evaluation; the loss is identical too wherever a
batch's loss sum is (same device type and kernels), else equal up to float summation order
within a batch. Every rank must call it (it is a collective); the single-process path
(lth.training.loop.evaluate) never comes here.
"""
from typing import Callable, Dict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lth.data.loader import DeviceLoader
from lth.training import distributed


@torch.inference_mode()
def sharded_evaluate(forward: Callable, model: nn.Module, loader: DeviceLoader, bf16: bool, autocast) -> Dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over the loader, in eval mode, split over the ranks.
    autocast: lth.training.loop.autocast (passed in: this module sits below the loop)."""
    was_training = model.training
    model.eval()
    batches = len(loader)
    # on the loader's device: NCCL reduces GPU tensors, gloo CPU ones (a CPU run's device)
    loss_sums = torch.zeros(batches, device=loader.device)
    correct = torch.zeros(batches, device=loader.device, dtype=torch.long)
    with autocast(loader.device, bf16):
        for i, (x, y) in loader.every_nth(distributed.rank(), distributed.world_size()):
            logits = forward(x).float()
            loss_sums[i] = F.cross_entropy(logits, y, reduction="sum")
            correct[i] = (logits.argmax(1) == y).sum()
    model.train(was_training)
    dist.all_reduce(loss_sums)
    dist.all_reduce(correct)
    loss_sum = torch.zeros((), device=loader.device)
    for value in loss_sums:   # batch order, float32: the single-process loop's additions
        loss_sum += value
    n = len(loader.y)
    return {"test_loss": loss_sum.item() / n, "test_acc": correct.sum().item() / n}
