"""Model registry. Classes, input channels and image size come from the dataset.

    from lth import models
    net = models.build("resnet18", num_classes=10, in_channels=3, image_size=32)
    models.names()  # ['conv2', 'conv4', 'conv6', 'lenet300_100', 'resnet18', 'resnet20', 'vgg16']
    models.build("resnet20", 10, 3, 32, init="pytorch")   # another scheme than the reference one

Add a model with `@models.register("name", init="scheme")` on a function
`(num_classes, in_channels, image_size) -> nn.Module` in a module imported below (or in a
plugin: lth.plugins). `init`, the entry's trait, names the scheme of the model's reference
implementation (lth.models.init), which build() applies:
torchvision's for resnet18 and vgg16, OpenLTH's for resnet20, lenet300_100 and conv2/4/6.
Initialisation draws from the global torch RNG: callers seed it (lth.lottery.assemble.build_model forks it).
"""
from typing import Callable, Optional

from torch import nn

from lth.models import init as init_schemes
from lth.registry import Registry

ModelFactory = Callable[[int, int, int], nn.Module]
# Trait init: the initialisation scheme of the model's reference implementation (lth.models.init).
MODELS = Registry("model", traits={"init": "pytorch"})


def register(name: str, init: str, help: Optional[str] = None):
    """@register("name", init="scheme") on a factory (num_classes, in_channels, image_size) -> nn.Module."""
    return MODELS.register(name, help=help, init=init)


def names():
    return MODELS.names()


def reference_init(name: str) -> str:
    """The init scheme of model `name`'s reference implementation."""
    return MODELS.get(name).traits["init"]


def build(name: str, num_classes: int, in_channels: int, image_size: int, init: Optional[str] = None) -> nn.Module:
    """The model, initialised by `init` (default: its reference implementation's scheme)."""
    entry = MODELS.get(name)
    scheme = init or entry.traits["init"]
    init_schemes.INITS.get(scheme)  # an unknown scheme is refused before the model is built and its init drawn
    return init_schemes.apply(entry.fn(num_classes, in_channels, image_size), scheme)


# Imported for their registrations.
from lth.models import lenet, resnet, vgg  # noqa: E402,F401
