"""MaskUpdater: pruning while training, the one binding of an in-round schedule to a run.

lth.training.loop calls `update(t, optimizer)` before optimizer step k with t = k / total (every
`interval` steps) and once more after the last step with t = 1, so a round always ends at
exactly its final target (docs/DESIGN.md §2). lth.lottery.imp builds it from the config and lth.bench
times the same object.

When an update prunes. A layer's wanted count is round(target * numel). With tolerance 0 an
update prunes whenever a wanted count has risen (the exact per-step trajectory). With tolerance
tau > 0 it prunes only once some layer lags its target by more than tau (local scope: more than
tau * numel weights; global: more than tau * total), and then brings every layer exactly to its
target. So between updates each layer's sparsity stays within max(tau, 1/numel) below the
schedule, never above it, and t = 1 always prunes to the exact final target. Under OCP from 0 to
90 % that is at most about 0.9 / tau updates a round, whatever the number of steps.

`on_prune(pruned_fraction, removed_sq)`, when given, hears of every update that pruned: the
fraction of the weights remaining before it that it pruned (s), and the squared norm of the
weights it zeroed (what ALLR's norm drop d needs, lth.training.retrain_lr). It costs one host sync per
such update, so runs without it pay nothing.

What an update prunes is always what lth.pruning.prune would prune. Magnitude pruning on the
CPU selects through a bounded candidate set (lth.pruning.candidates, 5-9x cheaper than ranking
every weight); elsewhere (CUDA, the random criterion) lth.pruning.scope re-selects in full, with
no host sync. The optimizer state and the weights of the newly pruned entries are zeroed by
index, and only in the layers that changed (the rest are zero already: docs/DESIGN.md §4.3).
"""
from typing import Callable, Dict, List, Optional

import torch

from lth.errors import LthError
from lth.pruning.masks import Masks
from lth.pruning.criteria import CRITERIA
from lth.pruning import candidates
from lth.pruning.scope import SCOPES, check_sparsity, prune
from lth.pruning.select import prune_layer
from lth.pruning.targets import Target

# How the weights to prune are found (the same weights either way): "candidates" (CPU float32
# weights, magnitude), "full" (lth.pruning.scope), "auto" (candidates where they apply).
SELECTS = ("auto", "candidates", "full")


class MaskUpdater:
    def __init__(self, masks: Masks, target: Callable[[float], Target], criterion: str = "magnitude",
                 scope: str = "local", interval: int = 1, generator: Optional[torch.Generator] = None,
                 on_prune: Optional[Callable[[float, float], None]] = None, tolerance: float = 0.0,
                 select: str = "auto"):
        if select not in SELECTS:
            raise LthError(f"unknown mask selection {select!r}; choose one of {', '.join(SELECTS)}")
        if not 0.0 <= tolerance < 1.0:
            raise LthError(f"pruning tolerance {tolerance} is outside [0, 1)")
        self.masks = masks
        self.target = target          # t in [0, 1] -> sparsity (or one per layer)
        self.criterion = criterion
        self.scope = scope
        self.interval = interval      # steps between updates (1: every step)
        self.generator = generator    # CPU generator of the random criterion
        self.tolerance = tolerance    # largest lag of a layer's sparsity behind the schedule (0: exact)
        self.select = select
        self.pruned_target: Optional[Target] = None  # the last target applied
        self.updates = 0              # updates that pruned (lth.bench counts them)
        self.on_prune = on_prune      # (s, squared norm of the weights zeroed) after each pruning
        self._removed_sq: List[torch.Tensor] = []  # this update's zeroed weights, squared and summed
        self._layers: Optional[List[Optional[candidates.Layer]]] = None  # numpy views, made at first use

    def due(self, step: int) -> bool:
        return step % self.interval == 0

    def _counts(self) -> List[int]:
        """Pruned count per layer, on the host (recounted once after the mask was loaded)."""
        if self.masks.known_counts is None:
            self.masks.known_counts = self.masks.pruned_counts()
            self.masks.known_total = sum(self.masks.known_counts)
        return list(self.masks.known_counts)

    def _candidate_layers(self) -> Optional[List[Optional[candidates.Layer]]]:
        """The layers the candidate selection applies to (None where it does not), or None."""
        if not CRITERIA.get(self.criterion).traits["magnitude"] or self.select == "full":
            return None
        if self._layers is None:
            self._layers = candidates.layers_of(self.masks.params, self.masks.tensors)
        return self._layers

    # ---- updating -------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, t: float, optimizer: Optional[torch.optim.Optimizer] = None) -> bool:
        """Prune to the target at progress t when it is due (see the module docstring);
        returns whether the mask changed."""
        target = self.target(t)
        final = t >= 1.0
        if self.on_prune is not None:
            remaining = self.masks.numel() - sum(self._counts())
            self._removed_sq = []
        if not SCOPES.get(self.scope).traits["per_layer"]:   # one threshold over all layers
            if not isinstance(target, (int, float)):
                raise LthError(f"{self.scope} pruning takes one sparsity for all layers, not per-layer targets")
            changed = self._update_global(target, final, optimizer)
        else:
            changed = self._update_local(target, final, optimizer)
        if changed:
            self.pruned_target = target
            self.updates += 1
            if self.on_prune is not None:
                newly = remaining - (self.masks.numel() - sum(self._counts()))
                removed_sq = float(sum(self._removed_sq)) if self._removed_sq else 0.0
                self.on_prune(newly / remaining if remaining else 0.0, removed_sq)
        return changed

    def _update_local(self, target: Target, final: bool, optimizer) -> bool:
        masks = self.masks
        targets = [target] * len(masks.tensors) if isinstance(target, (int, float)) else list(target)
        if len(targets) != len(masks.tensors):
            raise LthError(f"{len(targets)} per-layer targets for {len(masks.tensors)} prunable layers")
        counts = self._counts()
        sizes = [m.numel() for m in masks.tensors]
        for sparsity in targets:
            check_sparsity(sparsity)
        rising = due_local(targets, counts, sizes, self.tolerance, final)
        if not rising:
            return False
        layers = self._candidate_layers()
        score = CRITERIA.get(self.criterion).fn
        for i, n in rising.items():  # layer order: the random criterion draws in that order
            if layers is not None and layers[i] is not None:
                offsets = candidates.select_layer(layers[i], sizes[i] - counts[i], n)
                self._note_removed(layers[i], offsets)
                layers[i].zero(offsets, _state(optimizer, masks.params[i]))
            else:
                prune_layer(masks.tensors[i], score(masks.params[i], self.generator), n)
                self._zero_pruned(i, optimizer)
            counts[i] += n
        masks.known_counts = counts
        masks.known_total = sum(counts)
        return True

    def _update_global(self, sparsity: float, final: bool, optimizer) -> bool:
        masks = self.masks
        check_sparsity(sparsity)
        total = masks.numel()
        if masks.known_total is None:
            self._counts()
        current = masks.known_total
        wanted = round(sparsity * total)
        if not due_global(wanted, current, total, self.tolerance, final):
            return False
        layers = self._candidate_layers()
        if layers is not None and all(layer is not None for layer in layers):
            counts = self._counts()
            picks = candidates.select_global(layers, total - current, wanted - current)
            for i, offsets in enumerate(picks):
                if offsets.size:
                    self._note_removed(layers[i], offsets)
                    layers[i].zero(offsets, _state(optimizer, masks.params[i]))
                    counts[i] += offsets.size
            masks.known_counts, masks.known_total = counts, wanted
            return True
        # Full re-selection over all layers: per-layer counts become unknown (recounting them
        # would be a host sync); lth.pruning.scope keeps the total in masks.known_total.
        prune(masks, sparsity, self.criterion, "global", self.generator)
        for i in range(len(masks.tensors)):
            self._zero_pruned(i, optimizer)
        return True

    def _note_removed(self, layer: candidates.Layer, offsets) -> None:
        if self.on_prune is not None:
            self._removed_sq.append(torch.from_numpy(layer.weights[offsets]).float().pow(2).sum())

    def _zero_pruned(self, i: int, optimizer) -> None:
        """Zero layer i's pruned weights and their optimizer state (after a full re-selection)."""
        param, mask = self.masks.params[i], self.masks.tensors[i]
        if self.on_prune is not None:
            # Weights pruned earlier are exactly zero (docs/DESIGN.md §4.3), so the weights
            # outside the new mask that are not yet zeroed are exactly the ones pruned now.
            self._removed_sq.append((param.detach() * (mask == 0)).float().pow(2).sum())
        for value in _state(optimizer, param):
            value.mul_(mask)
        param.mul_(mask)

    # ---- reporting and checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict:
        # the keys lth.training.loop has always used, so older checkpoints resume
        state = {"pruned_target": -1.0 if self.pruned_target is None else self.pruned_target}
        if self.generator is not None:
            state["prune_generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        target = state["pruned_target"]
        self.pruned_target = None if target == -1.0 else target
        if self.generator is not None and "prune_generator" in state:
            self.generator.set_state(state["prune_generator"])


def due_local(targets: List[float], counts: List[int], sizes: List[int], tolerance: float,
              final: bool) -> Dict[int, int]:
    """Layer -> weights to prune now, when an update is due (empty when not): some layer's
    wanted count exceeds its pruned count by more than tolerance x its size, or t = 1."""
    rising = {}
    for i, (sparsity, pruned, size) in enumerate(zip(targets, counts, sizes)):
        wanted = round(sparsity * size)
        if wanted > pruned:
            rising[i] = wanted - pruned
    if final or any(n > tolerance * sizes[i] for i, n in rising.items()):
        return rising
    return {}  # every layer within the tolerance of its target: not yet


def due_global(wanted: int, current: int, total: int, tolerance: float, final: bool) -> bool:
    return wanted > current and (final or wanted - current > tolerance * total)


def count_updates(target: Callable[[float], Target], sizes: List[int], total: int, tolerance: float,
                  interval: int = 1, scope: str = "local", start: Optional[List[int]] = None) -> int:
    """The number of updates a round of `total` steps makes (they depend on the targets and the
    layer sizes only): lth.bench projects a full round's cost from a short one with it."""
    counts = list(start) if start is not None else [0] * len(sizes)
    current, updates = sum(counts), 0
    for t in [k / total for k in range(0, total, interval)] + [1.0]:
        value = target(t)
        if not SCOPES.get(scope).traits["per_layer"]:
            wanted = round(value * sum(sizes))
            if due_global(wanted, current, sum(sizes), tolerance, t >= 1.0):
                current, updates = wanted, updates + 1
            continue
        targets = [value] * len(sizes) if isinstance(value, (int, float)) else list(value)
        rising = due_local(targets, counts, sizes, tolerance, t >= 1.0)
        for i, n in rising.items():
            counts[i] += n
        updates += bool(rising)
    return updates


def _state(optimizer: Optional[torch.optim.Optimizer], param: torch.Tensor) -> List[torch.Tensor]:
    """The optimizer's per-weight state tensors of `param` (momentum, Adam moments)."""
    if optimizer is None:
        return []
    return [v for v in optimizer.state.get(param, {}).values() if torch.is_tensor(v) and v.shape == param.shape]
