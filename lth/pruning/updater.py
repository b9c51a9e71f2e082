"""MaskUpdater: pruning while training, the one binding of an in-round schedule to a run.

lth.train calls `update(t, optimizer)` before optimizer step k with t = k / total (every
`interval` steps) and once more after the last step with t = 1, so a round always ends at
exactly its final target (docs/DESIGN.md §2). An update that raises the target re-selects the
mask (lth.pruning.scope), zeroes the optimizer state of newly pruned weights (momentum, Adam
moments) and zeroes the weights; an update whose target has not risen does nothing.

`on_prune(pruned_fraction, removed_sq)`, when given, hears of every update that pruned: the
fraction of the weights remaining before it that it pruned (s), and the squared norm of the
weights it zeroed (what ALLR's norm drop d needs, lth.retrain_lr). It costs one host sync per
such update, so runs without it pay nothing.
"""
from typing import Callable, Optional

import torch

from lth.masks import Masks
from lth.pruning.scope import prune
from lth.pruning.targets import Target


class MaskUpdater:
    def __init__(self, masks: Masks, target: Callable[[float], Target], criterion: str = "magnitude",
                 scope: str = "local", interval: int = 1, generator: Optional[torch.Generator] = None,
                 on_prune: Optional[Callable[[float, float], None]] = None):
        self.masks = masks
        self.target = target          # t in [0, 1] -> sparsity (or one per layer)
        self.criterion = criterion
        self.scope = scope
        self.interval = interval      # steps between updates (1: every step, exact)
        self.generator = generator    # CPU generator of the random criterion
        self.pruned_target: Optional[Target] = None  # the last target applied
        self.updates = 0              # updates that raised the target (lth.bench counts them)
        self.on_prune = on_prune      # (s, squared norm of the weights zeroed) after each pruning

    def due(self, step: int) -> bool:
        return step % self.interval == 0

    def _rose(self, target: Target) -> bool:
        if self.pruned_target is None:
            return True
        if isinstance(target, list):
            return any(a > b for a, b in zip(target, self.pruned_target))
        return target > self.pruned_target

    @torch.no_grad()
    def update(self, t: float, optimizer: Optional[torch.optim.Optimizer] = None) -> bool:
        """Apply the target at progress t if it rose; returns whether the mask was re-selected."""
        target = self.target(t)
        if not self._rose(target):
            return False
        if self.on_prune is not None:
            remaining = self.masks.numel() - sum(self.masks.pruned_counts())
        prune(self.masks, target, self.criterion, self.scope, self.generator)
        if self.on_prune is not None:
            # Weights pruned earlier are exactly zero (docs/DESIGN.md §4.3), so the weights
            # outside the new mask that are not yet zeroed are exactly the ones pruned now.
            removed_sq = float(sum(((p.detach() * (m == 0)).float() ** 2).sum()
                                   for p, m in zip(self.masks.params, self.masks.tensors)))
            newly = remaining - (self.masks.numel() - sum(self.masks.pruned_counts()))
        if optimizer is not None:
            self.masks.zero_optimizer_state(optimizer)
        self.masks.enforce()
        if self.on_prune is not None:
            self.on_prune(newly / remaining if remaining else 0.0, removed_sq)
        self.pruned_target = target
        self.updates += 1
        return True

    # checkpoints: the keys lth.train has always used, so older checkpoints resume
    def state_dict(self) -> dict:
        state = {"pruned_target": -1.0 if self.pruned_target is None else self.pruned_target}
        if self.generator is not None:
            state["prune_generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        target = state["pruned_target"]
        self.pruned_target = None if target == -1.0 else target
        if self.generator is not None and "prune_generator" in state:
            self.generator.set_state(state["prune_generator"])
