"""Weight initialisation schemes, each as its reference implementation applies it.

    from lth.models import init
    init.apply(model, "openlth")      # in place; draws from the global torch RNG (callers seed it)
    init.INITS                        # the registry (lth.registry): name -> scheme(model)

W0 is what a lottery ticket is made of, so every model starts as its reference implementation
starts it (lth.models.build applies the model's registered scheme; `python -m
lth.models.reference` compares the per-layer statistics):

  torchvision_resnet  torchvision's ResNet (fastai's ResNet-18 is torchvision's): conv weights
                      kaiming normal, fan_out, relu gain (std sqrt(2 / (out_channels * k * k)));
                      BatchNorm weight 1, bias 0; the fc keeps PyTorch's default
                      (uniform +-1/sqrt(fan_in) for weight and bias), as torchvision leaves it.
  torchvision_vgg     torchvision's VGG: convs as above with bias 0; BatchNorm 1 and 0; linear
                      weights N(0, 0.01), bias 0.
  openlth             OpenLTH's defaults (model_init=kaiming_normal, batchnorm_init=uniform):
                      conv and linear weights kaiming normal with torch's defaults (fan_in, gain
                      sqrt(2): std sqrt(2 / fan_in)); biases keep PyTorch's default; BatchNorm
                      weight U(0, 1), bias 0.
  glorot              Frankle & Carbin (2019)'s original code: Glorot normal weights
                      (std sqrt(2 / (fan_in + fan_out))), biases 0, BatchNorm 1 and 0.
  pytorch             PyTorch's layer defaults untouched (what lth did before issue 10).
  library             the constructor's own initialisation, untouched: the default of models
                      named by a spec (torchvision:, timm:, hf:, MODULE:FACTORY; issue 21).
"""
from typing import Callable

import torch
from torch import nn

from lth.registry import Registry

Scheme = Callable[[nn.Module], None]
INITS = Registry("initialisation")   # an entry is a scheme(model), applied in place under no_grad
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)
VGG_LINEAR_STD = 0.01   # torchvision VGG: classifier weights N(0, 0.01)


register = INITS.register   # @register("name") def scheme(model): ...


def apply(model: nn.Module, scheme: str) -> nn.Module:
    """Initialise `model` in place with `scheme`; returns it."""
    fn = INITS.get(scheme).fn
    with torch.no_grad():
        fn(model)
    return model


def _norms_one_zero(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, NORMS):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _convs_kaiming_fan_out(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@register("torchvision_resnet")
def torchvision_resnet(model: nn.Module) -> None:
    _convs_kaiming_fan_out(model)
    _norms_one_zero(model)


@register("torchvision_vgg")
def torchvision_vgg(model: nn.Module) -> None:
    _convs_kaiming_fan_out(model)
    _norms_one_zero(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, VGG_LINEAR_STD)
            nn.init.zeros_(m.bias)


@register("openlth")
def openlth(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)   # fan_in, leaky_relu with slope 0: gain sqrt(2)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.weight.shape))   # OpenLTH's "uniform" BatchNorm init
            nn.init.zeros_(m.bias)


@register("glorot")
def glorot(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _norms_one_zero(model)


@register("pytorch")
def pytorch(model: nn.Module) -> None:
    """Leave every layer as PyTorch's constructors initialised it."""


@register("library")
def library(model: nn.Module) -> None:
    """Leave the model as its library's constructor initialised it (timm, Hugging Face and
    torchvision apply their own schemes)."""
