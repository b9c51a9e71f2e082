"""The classic lottery-ticket models of Frankle & Carbin (2019), cheap on a CPU.

lenet300_100: a 300-100 fully connected network (MNIST).
conv2 / conv4 / conv6: 2/4/6 3x3 convolutions (64-64, 128-128, 256-256 pairs, 2x2 max-pool
after each pair) and a 256-256 fully connected head.
"""
from torch import nn

from lth.errors import LthError
from lth.models.registry import register


def _mlp(sizes, num_classes):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-1], num_classes))
    return layers


@register("lenet300_100", init="openlth")
def lenet300_100(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), *_mlp([in_channels * image_size * image_size, 300, 100], num_classes))


def _conv_net(pairs: int, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    layers, channels, size = [], in_channels, image_size
    for width in (64, 128, 256)[:pairs]:
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True),
                   nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels, size = width, size // 2
    if size < 1:
        raise LthError(f"conv{2 * pairs} needs images of at least {2 ** pairs} px, got {image_size}")
    return nn.Sequential(*layers, nn.Flatten(), *_mlp([channels * size * size, 256, 256], num_classes))


@register("conv2", init="openlth")
def conv2(num_classes, in_channels, image_size):
    return _conv_net(1, num_classes, in_channels, image_size)


@register("conv4", init="openlth")
def conv4(num_classes, in_channels, image_size):
    return _conv_net(2, num_classes, in_channels, image_size)


@register("conv6", init="openlth")
def conv6(num_classes, in_channels, image_size):
    return _conv_net(3, num_classes, in_channels, image_size)
