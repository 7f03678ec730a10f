"""ResNet-18/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv:1512.03385), torchvision-equivalent "v1.5": the stride of a bottleneck sits on its 3x3
conv. Module names follow torchvision's.

Builders return random weights (``layers.init_cnn_weights``) with BatchNorm statistics set by
``layers.calibrate_batchnorm`` (one fixed random batch) so a fresh model is well conditioned."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import calibrate_batchnorm, init_cnn_weights


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        out_ch = width * self.expansion
        self.downsample = _downsample(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: stride here
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.downsample = _downsample(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max pool, four stages, global pool, FC."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, width, 2 if (j == 0 and i > 0) else 1))
                in_ch = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        init_cnn_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _calibrated(model: ResNet) -> ResNet:
    calibrate_batchnorm(model, 224)
    return model


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 (He et al. 2016, arXiv:1512.03385); 11,689,512 parameters at 1000 classes."""
    return _calibrated(ResNet(BasicBlock, [2, 2, 2, 2], num_classes))


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1.5 (He et al. 2016, arXiv:1512.03385; stride on the bottleneck's 3x3 conv
    as in torchvision); 25,557,032 parameters at 1000 classes."""
    return _calibrated(ResNet(Bottleneck, [3, 4, 6, 3], num_classes))
