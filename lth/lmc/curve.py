"""Linear mode connectivity of any two checkpoints, as one function: lth.lmc.interpolate.

    from lth import lmc
    result = lmc.interpolate(state_a, state_b, alphas=11, evaluate=my_eval, model=model)
    result["instability_error"], result["error_barrier"], result["curve"]

The network at alpha is alpha * W_a + (1 - alpha) * W_b (so alpha 1 is a, alpha 0 is b, bit
for bit: lth.lmc.probe.lerp_into). `evaluate(model)` is yours: it returns the accuracy in [0, 1],
or a dict with "acc" (or "test_acc") and optionally "loss" (or "test_loss"); the model is in
eval mode when it is called. The definitions are the stability analysis's (analysis.interpolate,
docs/DESIGN.md §3 Instability): instability error = the error at alpha 0.5 (Hubens et al.);
error barrier = the largest error on the grid minus the mean of the two endpoint errors
(Frankle et al. 2020). The grid therefore always holds 0, 0.5 and 1.

BatchNorm statistics (`bn`), applied at every alpha, endpoints included:
  interpolate  running means and variances are interpolated like the weights (the default)
  reset        recomputed for each interpolated network: running stats reset, momentum=None
               (an exact average), train mode, over `bn_batches` (your training subset:
               a list of batches or a DataLoader, (x, y) pairs or bare inputs; no augmentation)
A model without BatchNorm records bn_mode "none". The model is a probe: its weights are
overwritten for each alpha and restored at the end.
"""
import itertools
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Union

import torch
from torch import nn

from lth.errors import LthError
from lth.lmc.probe import floating_tensors, has_batchnorm, lerp_into, recompute_batchnorm

BN_MODES = ("interpolate", "reset")


def grid(count: int) -> List[float]:
    """`count` evenly spaced alphas with 0 and 1 exact, plus 0.5 (analysis.settings.ProbeSettings.grid)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise LthError(f"alphas as a count must be an int >= 2, got {count!r}")
    return sorted({i / (count - 1) for i in range(count)} | {0.5})


def _alphas(alphas) -> List[float]:
    if isinstance(alphas, int) and not isinstance(alphas, bool):
        return grid(alphas)
    try:
        values = [float(a) for a in alphas]
    except (TypeError, ValueError):
        raise LthError(f"alphas must be a count or a list of numbers in [0, 1], got {alphas!r}") from None
    for a in values:
        if not 0.0 <= a <= 1.0:
            raise LthError(f"alphas must lie in [0, 1], got {a}")
    return sorted(set(values) | {0.0, 0.5, 1.0})


def _state(state, which: str) -> dict:
    """A state dict from a dict or a checkpoint path (torch.load weights_only=True; lth's tensor
    files and {"model": state} checkpoints are unwrapped)."""
    if isinstance(state, (str, Path)):
        path = Path(state)
        if not path.exists():
            raise LthError(f"checkpoint {which}: {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise LthError(f"checkpoint {which}: {path} is not a weights-only torch file "
                           f"({(str(e).strip().splitlines() or [type(e).__name__])[0][:120]})") from None
        if isinstance(state, dict) and "payload" in state and "sha256" in state:
            from lth.runs.files import load_tensors  # verifies the checksum
            state = load_tensors(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise LthError(f"checkpoint {which} is not a state dict of tensors")
    return state


def _score(measured, alpha: float) -> dict:
    if isinstance(measured, dict):
        acc = measured.get("acc", measured.get("test_acc"))
        loss = measured.get("loss", measured.get("test_loss"))
    else:
        acc, loss = measured, None
    if isinstance(acc, torch.Tensor):
        acc = acc.item()
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
        raise LthError(f"evaluate must return the accuracy in [0, 1] (or a dict with 'acc'), got {measured!r} "
                       f"at alpha {alpha}")
    point = {"alpha": alpha, "acc": float(acc), "error": 1.0 - float(acc)}
    if loss is not None:
        point["loss"] = float(loss.item() if isinstance(loss, torch.Tensor) else loss)
    return point


def _pairs(batches: Iterable, device) -> Iterable:
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield x.to(device), None


def summarise(points: List[dict]) -> dict:
    """Endpoints (alpha 1: a, alpha 0: b), instability error (alpha 0.5) and error barrier
    (max error minus the mean endpoint error), Frankle et al. 2020's definitions; the stability
    analysis (analysis.interpolate) uses this one too."""
    by_alpha = {p["alpha"]: p for p in points}
    end_a, end_b, middle = by_alpha[1.0], by_alpha[0.0], by_alpha[0.5]
    endpoint_mean = (end_a["error"] + end_b["error"]) / 2
    return {"endpoints": {"a": {"acc": end_a["acc"], "error": end_a["error"]},
                          "b": {"acc": end_b["acc"], "error": end_b["error"]}},
            "instability_error": middle["error"],
            "error_barrier": max(p["error"] for p in points) - endpoint_mean}


def interpolate(state_a: Union[dict, str, Path], state_b: Union[dict, str, Path], alphas: Union[int, Sequence[float]],
                evaluate: Callable[[nn.Module], object], *, model: nn.Module, bn: str = "interpolate",
                bn_batches: Optional[Iterable] = None, bn_limit: Optional[int] = None,
                forward: Optional[Callable] = None, bf16: bool = False) -> dict:
    """The curve between checkpoints a and b, its instability error and error barrier (module
    docstring). model: a network of their architecture (the probe); alphas: a count (an even
    grid) or a list; bn_limit: use only the first bn_limit of bn_batches (reset mode);
    forward: the callable for the BN recomputation's forward pass (default: model)."""
    if bn not in BN_MODES:
        raise LthError(f"unknown BatchNorm mode {bn!r}; choose one of {', '.join(BN_MODES)}")
    if not isinstance(model, nn.Module):
        raise LthError(f"model must be an nn.Module of the checkpoints' architecture, got {type(model).__name__}")
    if not callable(evaluate):
        raise LthError("evaluate must be a callable: evaluate(model) -> accuracy in [0, 1]")
    points_at = _alphas(alphas)
    with_bn = has_batchnorm(model)
    mode = bn if with_bn else "none"
    if mode == "reset":
        if bn_batches is None:
            raise LthError("bn='reset' recomputes the BatchNorm statistics: pass bn_batches (a list of training "
                           "batches or a DataLoader)")
        if iter(bn_batches) is bn_batches:
            raise LthError("bn_batches must be re-iterable (a list or a DataLoader), not a one-shot iterator: "
                           "it is read once per alpha")
    a, b = _state(state_a, "a"), _state(state_b, "b")
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    device = next(model.parameters()).device
    forward = forward or model
    try:
        tensors = []
        for state, which in ((a, "a"), (b, "b")):
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise LthError(f"checkpoint {which} does not fit the model ({str(e).splitlines()[0][:160]})") from None
            tensors.append([t.clone() for t in floating_tensors(model)])
        probe = floating_tensors(model)
        was_training, points = model.training, []
        for alpha in points_at:
            lerp_into(probe, tensors[0], tensors[1], alpha)
            if mode == "reset":
                batches = itertools.islice(bn_batches, bn_limit) if bn_limit is not None else bn_batches
                recompute_batchnorm(model, forward, _pairs(batches, device), device, bf16)
            model.eval()
            with torch.no_grad():
                points.append(_score(evaluate(model), alpha))
        model.train(was_training)
    finally:
        model.load_state_dict(original)
    return {"curve": points, "bn_mode": mode, **summarise(points)}
