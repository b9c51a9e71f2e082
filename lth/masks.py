"""Pruning masks owned by lth: one tensor per prunable weight, 1 = kept, 0 = pruned.

    masks = Masks.for_model(model, exclude=("fc.*",))
    masks.prune_to(0.9, method="local")     # L1 magnitude, every layer to 90 %
    ... optimizer.step(); masks.enforce()   # after every step: one multi-tensor multiply

Methods (`PRUNING_METHODS`):
  local   L1 magnitude, every layer to the same sparsity (the paper's setting)
  global  L1 magnitude, one threshold over all layers (OpenLTH's setting)
  random  uniformly random weights, every layer to the same sparsity (the control)

Invariants (tests/test_masks.py): masks only lose ones; a layer's pruned count is
round(target * numel), so achieved sparsity is within one weight per layer of the target
(global: within one weight overall); ties are broken by index, so the same
weights give the same mask on every run. We do not use `torch.nn.utils.prune`: it rebuilds
every weight on every forward through hooks (lth.bench measures the difference).
"""
import fnmatch
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from lth.errors import LthError

PRUNING_METHODS = ("local", "global", "random")
PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_weights(model: nn.Module, exclude: Sequence[str] = ()) -> Dict[str, nn.Parameter]:
    """Conv and linear weights by parameter name, minus names matching an `exclude` glob."""
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            name = f"{module_name}.weight" if module_name else "weight"
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
                found[name] = module.weight
    if not found:
        raise LthError(f"no prunable weights left after excluding {list(exclude)}")
    return found


class Masks:
    """Masks for a fixed list of parameters. Mask tensors keep their identity for the
    object's life (updates use `copy_`), so compiled graphs and foreach lists stay valid."""

    def __init__(self, params: Dict[str, nn.Parameter]):
        self.names: List[str] = list(params)
        self.params: List[nn.Parameter] = list(params.values())
        # Same dtype as the weight so that enforcement is a plain multiply.
        self.tensors: List[torch.Tensor] = [torch.ones_like(p, requires_grad=False) for p in self.params]
        # Pruned count per layer as last set by prune_to/load_state_dict, so that deciding
        # which layers to update costs no device-to-host sync inside the training loop.
        self._known_counts: Optional[List[int]] = [0] * len(self.tensors)

    @classmethod
    def for_model(cls, model: nn.Module, exclude: Sequence[str] = ()) -> "Masks":
        return cls(prunable_weights(model, exclude))

    # ---- measuring -------------------------------------------------------------------
    def numel(self) -> int:
        return sum(m.numel() for m in self.tensors)

    def pruned_counts(self) -> List[int]:
        # One host sync for all layers rather than one per layer.
        counts = torch.stack([(m == 0).sum() for m in self.tensors]).tolist()
        return [int(c) for c in counts]

    def sparsity(self) -> float:
        return sum(self.pruned_counts()) / self.numel()

    def report(self) -> List[dict]:
        """Per-layer sparsity, then a row named 'total'."""
        rows = []
        for name, mask, pruned in zip(self.names, self.tensors, self.pruned_counts()):
            rows.append({"name": name, "shape": list(mask.shape), "numel": mask.numel(),
                         "pruned": pruned, "sparsity": pruned / mask.numel()})
        total_pruned = sum(r["pruned"] for r in rows)
        rows.append({"name": "total", "shape": [], "numel": self.numel(),
                     "pruned": total_pruned, "sparsity": total_pruned / self.numel()})
        return rows

    # ---- pruning ---------------------------------------------------------------------
    @torch.no_grad()
    def prune_to(self, sparsity: float, method: str = "local",
                 generator: Optional[torch.Generator] = None) -> None:
        """Raise sparsity to `sparsity` (never lower: pruned weights stay pruned).

        `generator` (a CPU torch.Generator) drives the `random` method.
        """
        if not 0.0 <= sparsity < 1.0:
            raise LthError(f"sparsity {sparsity} is outside [0, 1)")
        if method == "global":
            self._prune_global(sparsity)
            return
        if method not in PRUNING_METHODS:
            raise LthError(f"unknown pruning method {method!r}; choose one of {', '.join(PRUNING_METHODS)}")
        if method == "random" and generator is None:
            raise ValueError("random pruning needs a seeded generator")
        counts = self._known_counts if self._known_counts is not None else self.pruned_counts()
        for i, (param, mask) in enumerate(zip(self.params, self.tensors)):
            target = round(sparsity * mask.numel())
            if target <= counts[i]:
                continue  # nothing new to prune in this layer (and never revive)
            if method == "random":
                scores = torch.rand(mask.shape, generator=generator).to(mask.device)
            else:
                scores = param.detach().abs().float()
            self._prune_layer(mask, scores, target - counts[i])
            counts[i] = target
        self._known_counts = counts

    def _prune_global(self, sparsity: float) -> None:
        scores = torch.cat([p.detach().abs().float().reshape(-1) for p in self.params])
        flat = torch.cat([m.reshape(-1) for m in self.tensors])
        already = sum(self._known_counts) if self._known_counts is not None else int((flat == 0).sum())
        target = round(sparsity * flat.numel())
        if target <= already:
            return
        self._prune_lowest(flat, scores, target - already)
        self._known_counts = None  # per-layer counts now depend on the weights: recount lazily
        offset = 0
        for mask in self.tensors:
            n = mask.numel()
            mask.copy_(flat[offset:offset + n].view(mask.shape))
            offset += n

    @classmethod
    def _prune_layer(cls, mask: torch.Tensor, scores: torch.Tensor, count: int) -> None:
        """`_prune_lowest` on one layer's mask, in row-major index order whatever its memory
        format (a channels_last weight has a channels_last mask, which has no flat view)."""
        flat = mask.reshape(-1)  # a view when contiguous, else a copy written back below
        cls._prune_lowest(flat, scores.reshape(-1), count)
        if not mask.is_contiguous():
            mask.copy_(flat.view(mask.shape))

    @staticmethod
    def _prune_lowest(flat_mask: torch.Tensor, scores: torch.Tensor, count: int) -> None:
        """Prune `count` more entries of `flat_mask`: the lowest scores among the kept ones,
        the lowest index first among equal scores.

        A threshold, not a sort (no host sync): topk when few are needed (an OCP step prunes
        a few hundred weights of millions), else a k-th value. lth.bench masks, resnet18 on
        CPU: an OCP-step update went from 267 ms (k-th value over all weights) to 109 ms.
        """
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

    @torch.no_grad()
    def random_like(self, generator: torch.Generator) -> "Masks":
        """A random mask with this mask's per-layer pruned counts (the random-pruning control)."""
        other = Masks(dict(zip(self.names, self.params)))
        for mask, pruned in zip(other.tensors, self.pruned_counts()):
            scores = torch.rand(mask.shape, generator=generator).to(mask.device)
            self._prune_layer(mask, scores, pruned)
        other._known_counts = None
        return other

    # ---- enforcing -------------------------------------------------------------------
    @torch.no_grad()
    def enforce(self) -> None:
        """Zero pruned weights: one multi-tensor multiply (call after every optimizer step)."""
        torch._foreach_mul_(self.params, self.tensors)

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of pruned weights (call before the optimizer step), so momentum
        and Adam moments of pruned weights stay exactly zero."""
        pairs = [(p.grad, m) for p, m in zip(self.params, self.tensors) if p.grad is not None]
        if pairs:
            grads, masks = zip(*pairs)
            torch._foreach_mul_(list(grads), list(masks))

    @torch.no_grad()
    def zero_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero every per-weight state tensor (momentum, Adam moments) of pruned weights."""
        for param, mask in zip(self.params, self.tensors):
            for value in optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.mul_(mask)

    # ---- saving ----------------------------------------------------------------------
    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Plain bool tensors by parameter name, on the CPU (loadable with weights_only=True)."""
        return {name: (mask != 0).cpu() for name, mask in zip(self.names, self.tensors)}

    @torch.no_grad()
    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        if sorted(state) != sorted(self.names):
            missing, extra = set(self.names) - set(state), set(state) - set(self.names)
            raise LthError(f"mask does not fit the model: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for name, mask in zip(self.names, self.tensors):
            if tuple(state[name].shape) != tuple(mask.shape):
                raise LthError(f"mask for {name} has shape {tuple(state[name].shape)}, "
                               f"the model's weight {tuple(mask.shape)}")
            mask.copy_(state[name].to(mask.dtype))
        self._known_counts = None

    def is_subset_of(self, other: "Masks") -> bool:
        """True when every weight kept here is kept in `other` (masks only lose ones)."""
        return all(bool(((a != 0) & (b == 0)).sum() == 0) for a, b in zip(self.tensors, other.tensors))
