"""Training recipes: named settings of the optimizer and LR-schedule fields (`--recipe`).

An entry's value is a read-only mapping of flat names (RECIPES.add). A training field left
unset (None) takes the recipe's value when the config is resolved (lth.config); the recipe's
optimizer and LR-schedule parameters apply to the chosen entry where it has them.
"""
from types import MappingProxyType

from lth.registry import Registry

RECIPES = Registry("recipe")
# Hubens et al.: fastai fit_one_cycle, AdamW, lr 1e-3, cosine warm-up over 25 % from lr/25,
# cosine decay to lr/1e5, decoupled wd 0.01, no wd on BatchNorm and biases.
RECIPES.add("paper", MappingProxyType(dict(
    optimizer="adamw", lr=1e-3, beta1=0.9, beta2=0.99, eps=1e-5, weight_decay=0.01,
    decay_bn_bias=False, lr_schedule="one_cycle", warmup=0.25, div=25.0, div_final=1e5)),
    help="the paper's: fastai fit_one_cycle, AdamW 1e-3, wd 0.01 not on BatchNorm and biases")
# OpenLTH's CIFAR recipe: SGD 0.1, momentum 0.9, wd 1e-4 on everything, x0.1 at 50 % and 75 %.
RECIPES.add("openlth", MappingProxyType(dict(
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, decay_bn_bias=True,
    lr_schedule="step", warmup=0.0, milestones=(0.5, 0.75), gamma=0.1)),
    help="OpenLTH's CIFAR recipe: SGD 0.1, momentum 0.9, wd 1e-4, x0.1 at 50 % and 75 %")
