"""Optimizers: a registry of constructors make(groups, lr, **params) -> torch.optim.Optimizer.

    adamw  decoupled weight decay (fastai's default optimizer, the paper's recipe)
    sgd    with momentum (OpenLTH's recipe)

`lth.training.loop.make_optimizer(model, train_cfg, device)` builds the configured one, with the
parameter groups (no weight decay on BatchNorm weights and biases unless --decay-bn-bias).
Fused kernels on CUDA and CPU: on CPU the foreach path's sqrt is about 5x slower on the exact
zeros that masked Adam moments hold (lth.bench masks --profile, resnet18 batch 16: AdamW step
49.9 -> 7.1 ms masked).
"""
from dataclasses import dataclass

import torch

from lth.knobs import knob
from lth.registry import Registry

# Trait keeps_pruned_zero: the optimizer leaves a pruned weight exactly zero once its gradient
# and its state are zero (lth.training.loop masks the gradients before every step; every mask update zeroes the state of
# the weights it prunes): SGD moves it by lr * (momentum * 0 + 0 + wd * 0) = 0 (Nesterov too),
# AdamW by lr * wd * 0 and lr * 0 / (sqrt(v) + eps) with eps > 0. For those lth.training.loop skips the
# weight multiply after each step: LeNet-300-100 on a CPU spent 7 % of its step on it (SGD
# 1.184 ms a dense step; masked 1.367 ms with both multiplies, 1.281 ms with the gradient one
# only). The trajectory is bit-identical either way (tests/test_masks.py), and lth.training.loop checks
# at every epoch's end that the pruned weights are still zero. An optimizer without the trait
# (a coupled update: LAMB's trust ratio, Adafactor's factored moments) is enforced every step.
OPTIMIZERS = Registry("optimizer", traits={"keeps_pruned_zero": False})


@dataclass
class AdamWParams:
    beta1: float = knob(0.9, "AdamW beta1 (the momentum term)", ge=0, lt=1)
    beta2: float = knob(0.99, "AdamW beta2 (fastai: 0.99)", ge=0, lt=1)
    eps: float = knob(1e-5, "AdamW epsilon (fastai: 1e-5)", gt=0)


@dataclass
class SgdParams:
    momentum: float = knob(0.9, "SGD momentum", ge=0, lt=1)
    nesterov: bool = knob(False, "Nesterov momentum")


@OPTIMIZERS.register("adamw", AdamWParams, keeps_pruned_zero=True)
def adamw(groups, lr: float, beta1: float = 0.9, beta2: float = 0.99, eps: float = 1e-5) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay."""
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps, fused=True)


@OPTIMIZERS.register("sgd", SgdParams, keeps_pruned_zero=True)
def sgd(groups, lr: float, momentum: float = 0.9, nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD with (optionally Nesterov) momentum."""
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, fused=True)
