"""MobileNetV1 (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", arXiv:1704.04861) and MobileNetV2 (Sandler et al., "MobileNetV2: Inverted
Residuals and Linear Bottlenecks", CVPR 2018, arXiv:1801.04381), width 1.0, 224x224 input.

Builders return random weights (``layers.init_cnn_weights``) with BatchNorm statistics set by
``layers.calibrate_batchnorm`` (one fixed random batch) so a fresh model is well conditioned."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import ConvBNAct, calibrate_batchnorm, init_cnn_weights, make_divisible

# MobileNetV1 body after the stem: (output channels, stride of the depthwise conv).
_V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    """3x3/2 conv stem, 13 depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each
    followed by BN + ReLU), global average pool, FC."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2)]
        in_ch = 32
        for out_ch, stride in _V1_BLOCKS:
            layers.append(nn.Sequential(ConvBNAct(in_ch, in_ch, 3, stride, groups=in_ch), ConvBNAct(in_ch, out_ch, 1)))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_ch, num_classes)
        init_cnn_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), linear 1x1 project,
    residual when stride 1 and channels match (torchvision module names)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden, 1, act=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision-equivalent MobileNetV2 (same module names)."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        # (expansion t, channels c, repeats n, first stride s): Table 2 of the paper
        setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                   (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        in_ch = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in setting:
            out_ch = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        layers.append(ConvBNAct(in_ch, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_cnn_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    """MobileNetV1 1.0-224 (Howard et al. 2017, arXiv:1704.04861); 4,231,976 parameters at
    1000 classes (4.2 M in the paper's Table 8)."""
    model = MobileNetV1(num_classes)
    calibrate_batchnorm(model, 224)
    return model


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNetV2 1.0 (Sandler et al. 2018, arXiv:1801.04381), torchvision-equivalent with
    ReLU6; 3,504,872 parameters at 1000 classes."""
    model = MobileNetV2(num_classes)
    calibrate_batchnorm(model, 224)
    return model
