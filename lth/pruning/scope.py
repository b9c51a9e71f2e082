"""Scope: how a sparsity target is spread over the prunable layers.

    local   every layer to its own target (one value for all, or per-layer values from
            --layer-rate): a layer's pruned count is round(target * numel) (the paper's setting)
    global  one threshold over all layers: round(target * total) pruned overall (OpenLTH)

Masks only lose ones: a target at or below what a layer has already pruned changes nothing.
Per-layer pruned counts are tracked on the host (`Masks.known_counts`), and the total after a
global prune (`Masks.known_total`), so deciding what to update costs no device-to-host sync
inside the training loop.
"""
from typing import Optional, Sequence, Union

import torch

from lth.errors import LthError
from lth.pruning.masks import Masks
from lth.pruning.criteria import CRITERIA
from lth.pruning.select import prune_layer, prune_lowest
from lth.registry import Registry

# Trait per_layer: the scope takes one target per layer (--layer-rate); False: one threshold over
# all layers, one target for all (lth.pruning.updater updates such masks as global pruning does).
# An entry is `prune(masks, targets, score, generator)`: raise the masks to `targets` (one
# sparsity, or one per layer for a per_layer scope), never lower.
SCOPES = Registry("pruning scope", traits={"per_layer": True})


@torch.no_grad()
def prune(masks: Masks, target: Union[float, Sequence[float]], criterion: str = "magnitude",
          scope: str = "local", generator: Optional[torch.Generator] = None) -> None:
    """Raise sparsity to `target` (never lower). `target`: one sparsity, or (local) one per layer
    in masks.names order. `generator` (CPU) drives the random criterion."""
    score = CRITERIA.get(criterion).fn
    entry = SCOPES.get(scope)
    if not entry.traits["per_layer"] and not isinstance(target, (int, float)):
        raise LthError(f"{scope} pruning takes one sparsity for all layers, not per-layer targets")
    entry.fn(masks, target, score, generator)


@SCOPES.register("local")
def _prune_local(masks: Masks, target: Union[float, Sequence[float]], score, generator) -> None:
    """Every layer to its own target: round(target * numel) pruned per layer (the paper's)."""
    targets = [target] * len(masks.tensors) if isinstance(target, (int, float)) else list(target)
    if len(targets) != len(masks.tensors):
        raise LthError(f"{len(targets)} per-layer targets for {len(masks.tensors)} prunable layers")
    counts = masks.known_counts if masks.known_counts is not None else masks.pruned_counts()
    for i, (param, mask, sparsity) in enumerate(zip(masks.params, masks.tensors, targets)):
        check_sparsity(sparsity)
        wanted = round(sparsity * mask.numel())
        if wanted <= counts[i]:
            continue  # nothing new to prune in this layer (and never revive)
        prune_layer(mask, score(param, generator), wanted - counts[i])
        counts[i] = wanted
    masks.known_counts, masks.known_total = counts, sum(counts)


def check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise LthError(f"sparsity {sparsity} is outside [0, 1)")


@SCOPES.register("global", per_layer=False)
def _prune_global(masks: Masks, sparsity: float, score, generator) -> None:
    """One threshold over all layers: round(target * total) pruned overall (OpenLTH)."""
    check_sparsity(sparsity)
    scores = torch.cat([score(p, generator).reshape(-1) for p in masks.params])
    flat = torch.cat([m.reshape(-1) for m in masks.tensors])
    already = masks.known_total if masks.known_total is not None else int((flat == 0).sum())
    wanted = round(sparsity * flat.numel())
    if wanted <= already:
        return
    prune_lowest(flat, scores, wanted - already)
    # Per-layer counts now depend on the weights (recounted when needed); the total is known.
    masks.known_counts, masks.known_total = None, wanted
    offset = 0
    for mask in masks.tensors:
        n = mask.numel()
        mask.copy_(flat[offset:offset + n].view(mask.shape))
        offset += n


@torch.no_grad()
def random_mask_like(masks: Masks, generator: torch.Generator) -> Masks:
    """A random mask with `masks`' per-layer pruned counts (the random-pruning control)."""
    other = Masks(dict(zip(masks.names, masks.params)))
    score = CRITERIA.get("random").fn
    for param, mask, pruned in zip(other.params, other.tensors, masks.pruned_counts()):
        prune_layer(mask, score(param, generator), pruned)
    other.known_counts = other.known_total = None
    return other
