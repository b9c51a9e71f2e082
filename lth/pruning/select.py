"""The selection primitive shared by every scope: prune the `count` lowest-scoring kept entries.

A threshold, not a sort (no host sync): topk when few are needed (an OCP step prunes a few
hundred weights of millions), else a k-th value. Ties at the threshold are broken by index, so
the same weights give the same mask on every run. lth.bench masks, resnet18 on CPU: an
OCP-step update went from 267 ms (k-th value over all weights) to 109 ms with topk.

Also the flat view that the candidate selection (lth.pruning.candidates) works on: a weight, its
mask and its optimizer state share one memory layout (contiguous, or channels_last for
convolutions), so one offset into that view names the same weight in all of them.
"""
from typing import Optional

import torch


def prune_lowest(flat_mask: torch.Tensor, scores: torch.Tensor, count: int) -> None:
    """Zero `count` more entries of the 1-d `flat_mask` in place: the lowest `scores` among
    the kept ones, the lowest index first among equal scores."""
    if count <= 0:
        return
    scores = scores.masked_fill(flat_mask == 0, float("inf"))  # pruned: never chosen again
    if count * 8 < scores.numel():
        threshold = torch.topk(scores, count, largest=False, sorted=False).values.max()
    else:
        threshold = torch.kthvalue(scores, count).values
    below = scores < threshold
    ties = scores == threshold
    prune = below | (ties & (torch.cumsum(ties, 0, dtype=torch.int32) <= count - below.sum()))
    flat_mask.masked_fill_(prune, 0)


def prune_layer(mask: torch.Tensor, scores: torch.Tensor, count: int) -> None:
    """`prune_lowest` on one layer's mask in row-major index order, whatever its memory format
    (a channels_last weight has a channels_last mask, which has no flat view)."""
    flat = mask.reshape(-1)  # a view when contiguous, else a copy written back below
    prune_lowest(flat, scores.reshape(-1), count)
    if not mask.is_contiguous():
        mask.copy_(flat.view(mask.shape))


def is_dense(t: torch.Tensor) -> bool:
    """True when `t` fills its storage without gaps or overlaps (any order of dimensions), so
    that memory offsets 0..numel-1 name each element once."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: d[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def memory_flat(t: torch.Tensor) -> Optional[torch.Tensor]:
    """A 1-d view of `t` in memory order (None when `t` is not dense)."""
    if t.is_contiguous():
        return t.view(-1)
    if not is_dense(t):
        return None
    return t.as_strided((t.numel(),), (1,))
