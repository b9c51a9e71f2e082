"""Rewinding in your own loop: lth.rewind, and late rewinding from a saved step (lth.RewindPoint).

    init = lth.snapshot(model)                      # W0, before training
    ... train round 1 with an lth.Pruner ...
    lth.rewind(model, init, pruner.masks)           # weights <- W0 * m_1 (docs/DESIGN.md §2 step 1)

Late rewinding (Frankle et al. 2020; docs/DESIGN.md §2): capture W_k after k optimizer steps of
the dense run, then start every round from W_k * m_{r-1}:

    point = lth.RewindPoint(model, optimizer, step=k)   # hooks the optimizer, captures after step k
    ... train ... ; point.save("rewind.pt")             # W_k and k, atomic, weights_only-loadable
    point = lth.RewindPoint.load("rewind.pt"); lth.rewind(model, point.state, masks)

Round r then trains the remaining T - k steps with a fresh optimizer (OpenLTH rewinds weights
only), its Pruner spanning those steps: `lth.Pruner(..., total_steps=T - k)`.
"""
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from lth.errors import LthError
from lth.pruning.masks import Masks

REWIND_FORMAT = "lth-rewind-point/1"


def snapshot(model: nn.Module) -> Dict[str, torch.Tensor]:
    """A detached CPU copy of the model's state dict (weights and buffers): a rewind target."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _mask_tensors(model: nn.Module, masks) -> Dict[str, torch.Tensor]:
    """Name -> mask from a Masks, an lth.Pruner or a mask state dict (lth's format)."""
    if hasattr(masks, "masks") and isinstance(masks.masks, Masks):  # an lth.Pruner
        masks = masks.masks
    if isinstance(masks, Masks):
        return dict(zip(masks.names, masks.tensors))
    if not isinstance(masks, dict):
        raise LthError(f"masks must be an lth Masks, an lth.Pruner or a dict of mask tensors, got {type(masks).__name__}")
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise LthError(f"mask entry {name!r} names no parameter of the model")
        if not torch.is_tensor(mask) or tuple(mask.shape) != tuple(params[name].shape):
            raise LthError(f"mask for {name} has shape {tuple(getattr(mask, 'shape', ()))}, "
                           f"the model's weight {tuple(params[name].shape)}")
    return masks


@torch.no_grad()
def rewind(model: nn.Module, state: Dict[str, torch.Tensor], masks=None) -> nn.Module:
    """Load `state` (W0 or W_k: lth.snapshot, a RewindPoint's state, an lth run's init.pt payload)
    into `model`, then multiply the masked weights by their masks (kept weights times 1.0:
    exact). Returns the model. A state that does not fit the model is a one-line error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise LthError(f"the rewind state does not fit the model ({str(e).splitlines()[0][:160]})") from None
    if masks is not None:
        params = dict(model.named_parameters())
        for name, mask in _mask_tensors(model, masks).items():
            params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))
    return model


class RewindPoint:
    """W_k: the model's state after `step` optimizer steps (step 0: now), captured by an
    optimizer post-step hook that removes itself once it has fired."""

    def __init__(self, model: Optional[nn.Module] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                 step: int = 0, state: Optional[Dict[str, torch.Tensor]] = None):
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise LthError(f"the rewind step must be an int >= 0, got {step!r}")
        self.step, self.state, self._seen, self._handle = step, state, 0, None
        if state is not None:
            return
        if model is None:
            raise LthError("RewindPoint needs the model (and its optimizer for step > 0)")
        self.model = model
        if step == 0:
            self.state = snapshot(model)
        elif optimizer is None:
            raise LthError(f"RewindPoint at step {step} needs the optimizer whose steps it counts")
        else:
            self._handle = optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, optimizer, args, kwargs) -> None:
        self._seen += 1
        if self._seen == self.step:
            self.state = snapshot(self.model)
            self._handle.remove()

    @property
    def captured(self) -> bool:
        return self.state is not None

    def save(self, path: Union[str, Path]) -> None:
        """Write {W_k, k} atomically in lth's tensor format (loadable with weights_only=True)."""
        if self.state is None:
            raise LthError(f"the rewind point at step {self.step} is not captured yet ({self._seen} steps seen)")
        from lth.runs.files import save_tensors
        save_tensors(Path(path), {"format": REWIND_FORMAT, "step": self.step, "state": self.state})

    @classmethod
    def load(cls, path: Union[str, Path]) -> "RewindPoint":
        from lth.runs.files import load_tensors
        payload = load_tensors(Path(path))
        if not isinstance(payload, dict) or payload.get("format") != REWIND_FORMAT:
            raise LthError(f"{path} is not a rewind point saved by lth.RewindPoint.save")
        return cls(step=int(payload["step"]), state=payload["state"])
