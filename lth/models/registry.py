"""The model registry (MODELS) and build(): built-in and plugin models by name, others by spec."""
from typing import Callable, Optional

from torch import nn

from lth.errors import LthError
from lth.models import external, init as init_schemes
from lth.registry import Registry

ModelFactory = Callable[[int, int, int], nn.Module]
# Trait init: the initialisation scheme of the model's reference implementation (lth.models.init).
MODELS = Registry("model", traits={"init": "pytorch"})


def register(name: str, init: str, help: Optional[str] = None):
    """@register("name", init="scheme") on a factory (num_classes, in_channels, image_size) -> nn.Module."""
    return MODELS.register(name, help=help, init=init)


def entry_of(name: str):
    """The registry entry of a built-in or plugin model, with a one-line error naming the specs too."""
    if name not in MODELS:
        raise LthError(f"unknown model {name!r}; choose one of {', '.join(names())}, or a spec: "
                       f"torchvision:NAME, timm:NAME, hf:TYPE, MODULE:FACTORY")
    return MODELS.get(name)


def check(name: str) -> None:
    """A one-line error for a model that can never be built (before anything is written)."""
    if external.is_spec(name):
        external.check(name)
    else:
        entry_of(name)


def names():
    return MODELS.names()


def reference_init(name: str) -> str:
    """The init scheme of model `name`'s reference implementation."""
    return entry_of(name).traits["init"]


def build(name: str, num_classes: int, in_channels: int, image_size: int, init: Optional[str] = None) -> nn.Module:
    """The model, initialised by `init` (default: its reference implementation's scheme; a spec
    such as torchvision:resnet50 (lth.models.external): its constructor's own, "library")."""
    if external.is_spec(name):   # issue 21: models named by a spec resolve dynamically
        scheme = init or "library"
        init_schemes.INITS.get(scheme)  # an unknown scheme is refused before the model is built
        if scheme != "library" and external.is_pretrained(name):
            raise LthError(f"--init {scheme} would overwrite the pre-trained weights of {name}; "
                             f"leave --init unset (W0 is the pre-trained network)")
        return init_schemes.apply(external.build(name, num_classes, in_channels, image_size), scheme)
    entry = entry_of(name)
    scheme = init or entry.traits["init"]
    init_schemes.INITS.get(scheme)  # an unknown scheme is refused before the model is built and its init drawn
    return init_schemes.apply(entry.fn(num_classes, in_channels, image_size), scheme)
