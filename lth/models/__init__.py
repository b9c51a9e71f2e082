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
Models by spec (`torchvision:resnet50`, `timm:NAME`, `hf:TYPE`, `my_pkg.nets:make_net`) resolve
dynamically through lth.models.external and keep their constructor's initialisation ("library").
Initialisation draws from the global torch RNG: callers seed it (lth.lottery.assemble.build_model forks it).

The registry and build() live in lth.models.registry; this package imports the built-in models
(lenet, resnet, vgg) so that they are registered.
"""
from lth.models.registry import MODELS, build, check, entry_of, names, reference_init, register  # noqa: F401

# Imported for their registrations.
from lth.models import lenet, resnet, vgg  # noqa: E402,F401
