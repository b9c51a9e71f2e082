"""ResNets: resnet18 (He et al. 2016, the paper's) and resnet20 (the CIFAR ResNet of He et al.).

resnet18 picks its stem from the image size: the CIFAR stem (3x3 conv, stride 1, no max-pool)
below 128 px, the ImageNet stem (7x7 conv stride 2 + max-pool) at 128 px and above, as for
the paper's 224x224 setting.
"""
from torch import nn

from lth.models.registry import register

IMAGENET_STEM_MIN_SIZE = 128  # images at least this large get the 7x7/stride-2 stem


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, widths, blocks, num_classes: int, in_channels: int, imagenet_stem: bool):
        super().__init__()
        if imagenet_stem:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers, in_planes = [], widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, width, stride))
                in_planes = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(x.flatten(1))


@register("resnet18", init="torchvision_resnet")
def resnet18(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, in_channels,
                  imagenet_stem=image_size >= IMAGENET_STEM_MIN_SIZE)


@register("resnet20", init="openlth")
def resnet20(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return ResNet((16, 32, 64), (3, 3, 3), num_classes, in_channels, imagenet_stem=False)
