"""Pruning masks owned by lth: the storage, one tensor per prunable weight, 1 = kept, 0 = pruned.

    masks = Masks.for_model(model, exclude=("fc.*",))
    lth.pruning.prune(masks, 0.9)           # which weights to zero: lth.pruning decides
    ... loss.backward(); masks.mask_grads(); optimizer.step()
    masks.enforce()   # after a step only where the optimizer can move a zero (lth.training.optimizers)

Invariants (tests/test_masks.py, docs/DESIGN.md §4): masks only lose ones; pruned weights,
their gradients and their optimizer state stay exactly zero. We do not use
`torch.nn.utils.prune`: it rebuilds every weight on every forward through hooks (lth.bench
measures the difference).
"""
import fnmatch
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from lth.errors import LthError
from lth.pruning import layers as layers_mod

# Which layers are candidates before --exclude. fasterai's sparsifier prunes nn.Conv2d only (so the
# paper's classifier stayed dense); OpenLTH prunes every layer but the output layer. Issue 21:
# by module type for any model (lth.pruning.layers: linear, attention, all_with_embeddings too).
LAYER_SETS = layers_mod.LAYER_SETS


def prunable_weights(model: nn.Module, exclude: Sequence[str] = (), layers: str = "all") -> Dict[str, nn.Parameter]:
    """The weights of layer set `layers` by parameter name (lth.pruning.layers: conv, linear and
    attention weights by module type; all but the output layer; embeddings only when asked),
    the output layer last, minus names matching an `exclude` glob. A glob that matches no
    layer is an error listing the layer names."""
    picked = layers_mod.select(model, layers)
    all_names = [c.name for c in layers_mod.candidates(model)]
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in all_names):
            raise LthError(f"--exclude {pattern!r} matches no layer; the prunable weights are {', '.join(all_names)}")
    found = {name: c.param for name, c in picked.items()
             if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)}
    if not found:
        kinds = sorted({c.kind for c in layers_mod.candidates(model)})
        raise LthError(f"no prunable weights left after excluding {list(exclude)} (layers: {layers}; this model has "
                       f"{', '.join(kinds) or 'no prunable'} layers: pick --layers accordingly, see --layers-list)")
    return found


class Masks:
    """Masks for a fixed list of parameters. Mask tensors keep their identity for the
    object's life (updates use `copy_`), so compiled graphs and foreach lists stay valid."""

    def __init__(self, params: Dict[str, nn.Parameter]):
        self.names: List[str] = list(params)
        self.params: List[nn.Parameter] = list(params.values())
        # Same dtype as the weight so that enforcement is a plain multiply.
        self.tensors: List[torch.Tensor] = [torch.ones_like(p, requires_grad=False) for p in self.params]
        # Pruned count per layer as last set by lth.pruning (None: unknown, recount), so that
        # deciding which layers to update costs no device-to-host sync inside the training loop.
        self.known_counts: Optional[List[int]] = [0] * len(self.tensors)
        self.known_total: Optional[int] = 0  # their sum; kept by a global prune, which leaves the counts unknown

    @classmethod
    def for_model(cls, model: nn.Module, exclude: Sequence[str] = (), layers: str = "all") -> "Masks":
        return cls(prunable_weights(model, exclude, layers))

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

    # ---- enforcing -------------------------------------------------------------------
    @torch.no_grad()
    def enforce(self) -> None:
        """Zero pruned weights: one multi-tensor multiply (call after every optimizer step)."""
        torch._foreach_mul_(self.params, self.tensors)

    @torch.no_grad()
    def pruned_are_zero(self) -> bool:
        """Whether every pruned weight is exactly zero (one host sync: lth.training.loop asks once an epoch)."""
        if not self.params:
            return True
        moved = torch.stack([(p.detach() * (m == 0)).abs().sum() for p, m in zip(self.params, self.tensors)])
        return bool(moved.sum() == 0)

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
        self.known_counts = self.known_total = None

    def is_subset_of(self, other: "Masks") -> bool:
        """True when every weight kept here is kept in `other` (masks only lose ones)."""
        return all(bool(((a != 0) & (b == 0)).sum() == 0) for a, b in zip(self.tensors, other.tensors))
