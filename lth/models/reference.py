"""Per-layer initial-weight statistics of lth's models beside their reference implementations'.

    python -m lth.models.reference resnet18          # against torchvision.models.resnet18
    python -m lth.models.reference vgg16 --seed 3    # against torchvision.models.vgg16_bn
    python -m lth.models.reference resnet20          # OpenLTH models: against the analytic values

For every conv, linear and norm parameter, in module order: lth's std (and mean), the
reference implementation's std for the same layer built from the same seed (torchvision's
models; OpenLTH is not a package, so its models are checked against the analytic statistics
only), and the std the scheme implies analytically. resnet18 is compared at 224 px, where its
stem is torchvision's 7x7 one; at 32 px only the stem's first conv differs (3x3, std 0.059).
tests/test_models.py checks the same rows.
"""
import math
import sys
from typing import List, Optional, Tuple

import torch
from torch import nn

from lth import models
from lth.errors import LthError, OneLineParser, cli_main
from lth.knobs import SEED_BOUNDS, number
from lth.models.init import NORMS, VGG_LINEAR_STD

LAYER_TYPES = (nn.Conv2d, nn.Linear) + NORMS
REFERENCE_SIZE = {"resnet18": 224, "lenet300_100": 28}   # the reference's layout (resnet18) or input (MNIST)
UNIFORM_01 = (0.5, 1 / math.sqrt(12))


def torchvision_reference(name: str, num_classes: int) -> Optional[nn.Module]:
    """torchvision's model of the same architecture, or None for models it does not have."""
    import torchvision
    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=num_classes)
    if name == "vgg16":
        return torchvision.models.vgg16_bn(num_classes=num_classes)
    return None


def layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]


def _fans(weight: torch.Tensor) -> Tuple[int, int]:
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def expected(scheme: str, module: nn.Module, param: str) -> Tuple[float, float]:
    """(mean, std) that `scheme` gives `module.<param>`, analytically."""
    weight = module.weight
    if isinstance(module, NORMS):
        if param == "bias":
            return 0.0, 0.0
        return UNIFORM_01 if scheme == "openlth" else (1.0, 0.0)
    fan_in, fan_out = _fans(weight)
    default = 1 / math.sqrt(3 * fan_in)   # PyTorch's default: U(+-1/sqrt(fan_in)), weight and bias
    linear = isinstance(module, nn.Linear)
    if param == "bias":
        zero = scheme in ("torchvision_vgg", "glorot") or (scheme == "torchvision_resnet" and not linear)
        return (0.0, 0.0) if zero else (0.0, default)
    if scheme in ("torchvision_resnet", "torchvision_vgg") and not linear:
        return 0.0, math.sqrt(2 / fan_out)
    if scheme == "torchvision_vgg":
        return 0.0, VGG_LINEAR_STD
    if scheme == "openlth":
        return 0.0, math.sqrt(2 / fan_in)
    if scheme == "glorot":
        return 0.0, math.sqrt(2 / (fan_in + fan_out))
    return 0.0, default


def compare(name: str, seed: int = 0, num_classes: int = 10) -> List[dict]:
    """One row per parameter of lth's `name`, beside the reference's same layer when there is one."""
    size = REFERENCE_SIZE.get(name, 32)
    channels = 1 if name == "lenet300_100" else 3
    torch.manual_seed(seed)
    ours = models.build(name, num_classes, channels, size)
    scheme = models.reference_init(name)
    torch.manual_seed(seed)
    theirs = torchvision_reference(name, num_classes)
    their_layers = layers(theirs) if theirs is not None else []
    if theirs is not None:
        # lth's VGG has one pooled linear head; compare it with torchvision's last linear layer
        convs_and_norms = [(n, m) for n, m in their_layers if not isinstance(m, nn.Linear)]
        their_layers = convs_and_norms + [(n, m) for n, m in their_layers if isinstance(m, nn.Linear)][-1:]
    our_layers = layers(ours)
    if theirs is not None and len(our_layers) != len(their_layers):
        raise LthError(f"{name}: {len(our_layers)} layers here, {len(their_layers)} in torchvision's")
    rows = []
    for i, (layer, module) in enumerate(our_layers):
        ref_name, ref = their_layers[i] if theirs is not None else (None, None)
        for param in ("weight", "bias"):
            tensor = getattr(module, param, None)
            if tensor is None:
                continue
            mean, std = expected(scheme, module, param)
            row = {"layer": f"{layer}.{param}", "shape": tuple(tensor.shape), "numel": tensor.numel(),
                   "mean": float(tensor.detach().mean()), "std": float(tensor.detach().std()) if tensor.numel() > 1 else 0.0,
                   "expected_mean": mean, "expected_std": std, "reference": None, "reference_std": None,
                   "reference_mean": None}
            ref_tensor = getattr(ref, param, None) if ref is not None else None
            if ref_tensor is not None:
                row.update(reference=f"{ref_name}.{param}", reference_mean=float(ref_tensor.detach().mean()),
                           reference_std=float(ref_tensor.detach().std()) if ref_tensor.numel() > 1 else 0.0)
            rows.append(row)
    return rows


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m lth.models.reference", description=__doc__.split("\n\n")[0])
    p.add_argument("model", choices=models.names())
    p.add_argument("--seed", type=number(int, "seed", **SEED_BOUNDS), default=0,
                   help="torch seed both models are built from [default: 0]")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    rows = compare(args.model, args.seed)
    print(f"{args.model}: init {models.reference_init(args.model)}, seed {args.seed}")
    print(f"{'lth layer':<28} {'shape':<18} {'std':>8} {'ref std':>8} {'expected':>8} {'ratio':>6}  reference layer")
    for r in rows:
        ref = "" if r["reference_std"] is None else f"{r['reference_std']:.5f}"
        ratio = "" if not r["reference_std"] else f"{r['std'] / r['reference_std']:.3f}"
        if r["expected_std"] == 0.0:
            ref, ratio = (ref, f"mean {r['mean']:g}")
        print(f"{r['layer']:<28} {str(r['shape']):<18} {r['std']:>8.5f} {ref:>8} {r['expected_std']:>8.5f} "
              f"{ratio:>6}  {r['reference'] or '(analytic)'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
