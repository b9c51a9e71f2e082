"""VGG-16 with BatchNorm (Simonyan & Zisserman 2015), the paper's second architecture.

The head is global average pooling and one linear layer (as in OpenLTH's CIFAR VGG and
fastai's pooled heads) rather than the 4096-wide ImageNet classifier, so the same network
serves 32x32 and 224x224 inputs.
"""
from torch import nn

from lth.models.registry import register

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, layout, num_classes: int, in_channels: int):
        super().__init__()
        layers, channels = [], in_channels
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1, bias=False),
                           nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@register("vgg16", init="torchvision_vgg")
def vgg16(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return VGG(VGG16_LAYOUT, num_classes, in_channels)
