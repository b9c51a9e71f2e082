"""Model registry. Classes, input channels and image size come from the dataset.

    from lth import models
    net = models.build("resnet18", num_classes=10, in_channels=3, image_size=32)
    models.names()  # ['conv2', 'conv4', 'conv6', 'lenet300_100', 'resnet18', 'resnet20', 'vgg16']

Add a model with `@models.register("name")` on a function
`(num_classes, in_channels, image_size) -> nn.Module` in a module imported below.
"""
from typing import Callable, Dict

from torch import nn

from lth.errors import LthError

ModelFactory = Callable[[int, int, int], nn.Module]
MODELS: Dict[str, ModelFactory] = {}


def register(name: str):
    def add(factory: ModelFactory) -> ModelFactory:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = factory
        return factory
    return add


def names():
    return sorted(MODELS)


def build(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    if name not in MODELS:
        raise LthError(f"unknown model {name!r}; choose one of {', '.join(names())}")
    return MODELS[name](num_classes, in_channels, image_size)


# Imported for their registrations.
from lth.models import lenet, resnet, vgg  # noqa: E402,F401
