"""Linear interpolation between two trained copies: alpha * W_a + (1 - alpha) * W_b.

The probe is one model whose tensors are overwritten in place for each alpha (a multi-tensor
copy of W_b, then a multi-tensor lerp towards W_a), rather than a new state dict per alpha.
torch.lerp computes `end - (end - start) * (1 - w)` for w >= 0.5 and `start + w * (end - start)`
below, so alpha = 1 gives W_a and alpha = 0 gives W_b bit for bit, and weights pruned in both
copies (zero in both) stay exactly zero at every alpha.

BatchNorm statistics (`mode`):
  interpolate  running means and variances are interpolated like the weights (plain state-dict
               interpolation; the default)
  reset        they are recomputed for each interpolated network: running stats reset,
               momentum=None (an exact average over batches), train mode, on the first
               `bn_batches` training batches without augmentation
  none         the model has no BatchNorm: nothing to choose
The same mode is applied at every alpha, endpoints included: the curve, its endpoints, the
instability error and the barrier are one evaluation. In interpolate (and none) mode the
endpoints are the copies exactly, so their accuracies equal the copies' own test accuracies;
in reset mode the endpoints carry recomputed statistics and differ from the copies' own
accuracies (issue 10's audit, resnet20/digits: copy b 98.05 %, its reset endpoint 98.33 %).
The copies' own accuracies are reported separately (analysis.measure: `copies`).

Errors: instability error = error at alpha 0.5 (Hubens et al., section 5); error barrier =
max over the grid of the error minus the mean of the two endpoint errors (Frankle et al. 2020).
"""
import itertools
import sys
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from lth.data.loader import DeviceLoader
from lth.lmc.probe import floating_tensors, lerp_into
from lth.lmc.probe import recompute_batchnorm
from lth.training.loop import evaluate


def snapshot(model: nn.Module, state: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
    """`state` loaded into the model (device, memory format) and copied out as floating_tensors."""
    model.load_state_dict(state)
    return [t.clone() for t in floating_tensors(model)]


def curve(model: nn.Module, forward: Callable, state_a: dict, state_b: dict, alphas: Sequence[float], mode: str,
          test_loader: DeviceLoader, bn_loader: Optional[DeviceLoader], bn_batches: int, bf16: bool,
          inspect: Optional[Callable[[float, nn.Module], None]] = None) -> List[dict]:
    """Test accuracy, error and loss of the interpolated network at each alpha.

    inspect(alpha, model) sees each interpolated network before it is evaluated (tests use it).
    """
    a, b = snapshot(model, state_a), snapshot(model, state_b)
    probe = floating_tensors(model)
    points = []
    bar = tqdm(alphas, desc="interpolate", unit="alpha", leave=False, disable=not sys.stderr.isatty())
    for alpha in bar:
        lerp_into(probe, a, b, alpha)
        if mode == "reset":
            recompute_batchnorm(model, forward, itertools.islice(bn_loader, bn_batches), bn_loader.device, bf16)
        if inspect is not None:
            inspect(alpha, model)
        measured = evaluate(forward, model, test_loader, bf16)
        points.append({"alpha": alpha, "acc": measured["test_acc"], "error": 1.0 - measured["test_acc"],
                       "loss": measured["test_loss"]})
    bar.close()
    return points

