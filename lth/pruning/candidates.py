"""Exact magnitude selection on the CPU through a bounded candidate set: what a mask update
during training runs there (lth.pruning.updater).

The selection is the one lth.pruning.scope makes: the `count` kept weights of lowest |w|, the
lowest row-major index first among equal ones (global scope: over all layers, in layer order).
Instead of ranking every weight (topk), each update:

    scores     = |w| / mask          kept: |w| exactly; pruned: 0/0 = nan, never a candidate
    bound      = a quantile of a strided sample of the scores, placed to admit about
                 CANDIDATES x count weights
    candidates = every weight with score <= bound            (all kept ones when bound = inf)
    chosen     = the `count` lowest candidates, ties by index; if fewer than `count` weights
                 are under the bound, the bound is raised and the step repeated

Every kept weight outside the candidates scores above the bound, so above every candidate: the
chosen are exactly the `count` lowest of the layer, whatever the sample (it only sets the cost).
This relies on pruned weights being exactly zero (docs/DESIGN.md §4.3). numpy does the passes:
on one CPU thread its comparisons and nonzero run 5-9x faster than torch's, whose bool kernels
are slow here (LeNet-300-100's 235,200-weight layer: 49 us against 358 us).

Measured on LeNet-300-100, MNIST copy, OCP 0 -> 90 %, 1 thread (lth.bench prune's setting):
a full re-selection (topk) costs 0.9 ms on that layer, this 0.19 ms. A persistent pool of the
lowest weights, checked against the rest at each update, failed 22 % of its checks: under AdamW
at lr 3e-3 a step moves a weight by up to about the pool's bound, so weights crossing zero
leave the rest below the pool; drawing the candidates afresh at each update is cheaper.
"""
import math
from typing import Dict, List, Optional

import numpy as np
import torch

from lth.pruning.select import memory_flat

SAMPLE = 2048     # scores sampled (a fixed stride, no randomness) to place the bound
CANDIDATES = 3    # the bound admits about this many times the count wanted


class Layer:
    """One prunable weight and its mask as flat numpy views in memory order, with a reusable
    score buffer (no allocation per update)."""

    def __init__(self, param: torch.Tensor, mask: torch.Tensor):
        self.param, self.mask_tensor = param.detach(), mask
        self.weights = memory_flat(self.param).numpy()
        self.mask = memory_flat(mask).numpy()
        self.scores = np.empty_like(self.weights)
        self.contiguous = self.param.is_contiguous()
        self._state_views: Dict[int, tuple] = {}  # id -> (optimizer state tensor, flat numpy view or None)

    def zero(self, offsets: np.ndarray, state: List[torch.Tensor]) -> None:
        """Prune at memory `offsets`: the mask, the weight and the per-weight optimizer state
        (numpy views of the same memory: no copies, a few microseconds)."""
        self.mask[offsets] = 0
        self.weights[offsets] = 0
        for value in state:
            cached = self._state_views.get(id(value))
            if cached is None or cached[0] is not value:
                same = value.stride() == self.param.stride() and value.dtype == self.param.dtype
                cached = (value, memory_flat(value).numpy() if same and value.device.type == "cpu" else None)
                self._state_views[id(value)] = cached
            if cached[1] is not None:
                cached[1][offsets] = 0
            else:
                value.mul_(self.mask_tensor)  # another layout: the mask multiply (pruned entries stay 0)

    def score(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            np.abs(self.weights, out=self.scores)
            np.divide(self.scores, self.mask, out=self.scores)
        return self.scores

    def under(self, bound: float) -> np.ndarray:
        """Memory offsets of the kept weights with score <= bound, in row-major order."""
        inside = self.scores < bound if bound == math.inf else self.scores <= bound  # inf: any kept weight
        offsets = np.flatnonzero(inside)
        if not self.contiguous and offsets.size:
            offsets = offsets[np.argsort(row_major(self.param, offsets))]
        return offsets


def usable(param: torch.Tensor, mask: torch.Tensor) -> bool:
    """The candidates need CPU float32 tensors of the same dense layout."""
    return (param.device.type == "cpu" and param.dtype == torch.float32 and mask.dtype == torch.float32
            and param.stride() == mask.stride() and memory_flat(param.detach()) is not None)


def row_major(t: torch.Tensor, offsets: np.ndarray) -> np.ndarray:
    """Row-major flat index of the elements at memory `offsets` of the dense tensor `t`."""
    index = np.zeros_like(offsets)
    row_stride = 1
    for dim in reversed(range(t.dim())):
        index += (offsets // t.stride(dim)) % t.shape[dim] * row_stride
        row_stride *= t.shape[dim]
    return index


def bound_for(scores: List[np.ndarray], kept: int, want: int) -> float:
    """A score under which about `want` of the `kept` weights fall (inf: all of them)."""
    if want >= kept:
        return math.inf
    total = sum(s.size for s in scores)
    stride = max(1, total // SAMPLE)
    sample = scores[0][::stride] if len(scores) == 1 else np.concatenate([s[::stride] for s in scores])
    k = min(sample.size - 1, math.ceil(sample.size * want / total))
    value = float(np.partition(sample, k)[k])  # a copy; pruned weights (nan) sort last
    return math.inf if math.isnan(value) else value


def _select(layers: List[Layer], kept: int, count: int) -> List[np.ndarray]:
    scores = [layer.score() for layer in layers]
    want = CANDIDATES * count
    while True:
        bound = bound_for(scores, kept, want)
        found = [layer.under(bound) for layer in layers]
        if sum(f.size for f in found) >= count or bound == math.inf:
            break
        want *= 4  # the sample put the bound too low: admit more
    if len(layers) == 1:
        if found[0].size == count:
            return found
        return [found[0][np.argsort(scores[0][found[0]], kind="stable")[:count]]]  # ties: the earlier
    values = np.concatenate([s[f] for s, f in zip(scores, found)])
    chosen = np.sort(np.argsort(values, kind="stable")[:count])  # ties: the earlier candidate
    edges = np.cumsum([0] + [f.size for f in found])
    return [f[chosen[(chosen >= a) & (chosen < b)] - a] for f, a, b in zip(found, edges[:-1], edges[1:])]


def select_layer(layer: Layer, kept: int, count: int) -> np.ndarray:
    """Memory offsets of the `count` kept weights of lowest |w| in one layer (`kept` of them)."""
    return _select([layer], kept, count)[0]


def select_global(layers: List[Layer], kept: int, count: int) -> List[np.ndarray]:
    """Memory offsets per layer of the `count` kept weights of lowest |w| over all layers."""
    return _select(layers, kept, count)


def layers_of(params, masks) -> List[Optional[Layer]]:
    return [Layer(p, m) if usable(p, m) else None for p, m in zip(params, masks)]
