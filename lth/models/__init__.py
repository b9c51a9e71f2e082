"""Model registry. Classes, input channels and image size come from the dataset.

    from lth import models
    net = models.build("resnet18", num_classes=10, in_channels=3, image_size=32)
    models.names()  # ['conv2', 'conv4', 'conv6', 'lenet300_100', 'resnet18', 'resnet20', 'vgg16']
    models.build("resnet20", 10, 3, 32, init="pytorch")   # another scheme than the reference one

Add a model with `@models.register("name", init="scheme")` on a function
`(num_classes, in_channels, image_size) -> nn.Module` in a module imported below. `init` names
the scheme of the model's reference implementation (lth.models.init), which build() applies:
torchvision's for resnet18 and vgg16, OpenLTH's for resnet20, lenet300_100 and conv2/4/6.
Models by spec (`torchvision:resnet50`, `timm:NAME`, `hf:TYPE`, `my_pkg.nets:make_net`) resolve
dynamically through lth.models.external and keep their constructor's initialisation ("library").
Initialisation draws from the global torch RNG: callers seed it (lth.lottery.imp.build_model forks it).
"""
from typing import Callable, Dict, Optional

from torch import nn

from lth.errors import LthError
from lth.models import external, init as init_schemes

ModelFactory = Callable[[int, int, int], nn.Module]
MODELS: Dict[str, ModelFactory] = {}
REFERENCE_INIT: Dict[str, str] = {}   # model name -> its reference implementation's init scheme


def register(name: str, init: str):
    def add(factory: ModelFactory) -> ModelFactory:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = factory
        REFERENCE_INIT[name] = init
        return factory
    return add


def names():
    return sorted(MODELS)


def build(name: str, num_classes: int, in_channels: int, image_size: int, init: Optional[str] = None) -> nn.Module:
    """The model, initialised by `init` (default: its reference implementation's scheme; a spec
    such as torchvision:resnet50 (lth.models.external): its constructor's own, "library")."""
    if external.is_spec(name):   # issue 21: models named by a spec resolve dynamically
        scheme = init or "library"
        if scheme not in init_schemes.INITS:
            raise LthError(f"unknown initialisation {scheme!r}; choose one of {', '.join(sorted(init_schemes.INITS))}")
        return init_schemes.apply(external.build(name, num_classes, in_channels, image_size), scheme)
    if name not in MODELS:
        raise LthError(f"unknown model {name!r}; choose one of {', '.join(names())}, or a spec: "
                       f"torchvision:NAME, timm:NAME, hf:TYPE, MODULE:FACTORY")
    scheme = init or REFERENCE_INIT[name]
    if scheme not in init_schemes.INITS:  # refused before the model is built and its init drawn
        raise LthError(f"unknown initialisation {scheme!r}; choose one of {', '.join(sorted(init_schemes.INITS))}")
    return init_schemes.apply(MODELS[name](num_classes, in_channels, image_size), scheme)


# Imported for their registrations.
from lth.models import lenet, resnet, vgg  # noqa: E402,F401
