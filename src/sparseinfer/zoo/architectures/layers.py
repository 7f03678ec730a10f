"""Small building blocks shared by the zoo architectures (plain torch.nn only)."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

IntPair = Union[int, tuple[int, int]]
ActFactory = Optional[Callable[[], nn.Module]]


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going below 90 % of it
    (the rule of the TF MobileNet/EfficientNet reference code, torchvision ``_make_divisible``)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _same_pad(kernel_size: IntPair) -> IntPair:
    if isinstance(kernel_size, int):
        return (kernel_size - 1) // 2
    return ((kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)


class ConvBNAct(nn.Sequential):
    """Conv2d(bias=False) -> BatchNorm2d -> optional activation, as torchvision's
    ``Conv2dNormActivation`` (same child indices: ``0`` conv, ``1`` bn, ``2`` act)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair = 3,
        stride: IntPair = 1,
        padding: Optional[IntPair] = None,
        groups: int = 1,
        act: ActFactory = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                _same_pad(kernel_size) if padding is None else padding,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)
        self.out_channels = out_channels


def init_cnn_weights(model: nn.Module, linear_std: Optional[float] = 0.01) -> None:
    """Kaiming-normal convs (fan_in, ReLU gain), unit BN/LayerNorm, N(0, ``linear_std``) Linear
    layers (``None`` keeps PyTorch's default Linear init); all biases zero."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, image_size: int, batch: int = 2) -> None:
    """Set every BatchNorm2d's running mean/var to the batch statistics of one forward pass over
    a fixed N(0, 1) batch (from a private generator seeded 0: the global RNG is not touched, so the
    model still depends only on the caller's ``torch.manual_seed`` through the weight init).

    A freshly initialised network has BN running stats (0, 1), which makes eval-mode BN nearly
    the identity: activations then grow or vanish geometrically with depth (a fresh ResNet-50
    reaches ~1e3 logits, EfficientNet-B0 ~1e-4 or ~1e4 depending on the init gain), and such
    ill-conditioned models differ between runtimes by more than float32 rounding. After this
    one pass, the eval-mode model has normalised O(1) activations like a trained one, and its BN
    layers carry non-trivial statistics. Only BN layers run in train mode; ``num_batches_tracked``
    is reset to 0 and the momentum restored."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    was_training = model.training
    model.eval()
    momenta = []
    for bn in bns:
        momenta.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, running stats == batch stats
        bn.train()
    model(torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)))
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        bn.num_batches_tracked.zero_()
    model.train(was_training)
