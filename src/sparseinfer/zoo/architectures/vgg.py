"""VGG-16/19 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, arXiv:1409.1556), configurations D and E without BatchNorm, as
torchvision's ``vgg16``/``vgg19`` (same module indices). Random weights (``layers.init_cnn_weights``);
no BatchNorm."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import init_cnn_weights

_CFGS: dict[str, list[int | str]] = {
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """Plain conv stack (3x3 convs with bias + ReLU, 2x2 max pools), 7x7 adaptive pool and the
    4096-4096-classes classifier with dropout."""

    def __init__(self, cfg: list[int | str], num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU()]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # identity on the 7x7 map of a 224 input
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        init_cnn_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def vgg16(num_classes: int = 1000) -> VGG:
    """VGG-16, configuration D (Simonyan & Zisserman 2015, arXiv:1409.1556); 138,357,544
    parameters at 1000 classes."""
    return VGG(_CFGS["D"], num_classes)


def vgg19(num_classes: int = 1000) -> VGG:
    """VGG-19, configuration E (Simonyan & Zisserman 2015, arXiv:1409.1556); 143,667,240
    parameters at 1000 classes."""
    return VGG(_CFGS["E"], num_classes)
