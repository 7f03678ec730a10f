"""MobileViT-XS (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly
Vision Transformer", ICLR 2022, arXiv:2110.02178), as timm's ``mobilevit_xs`` / apple ml-cvnets:
stem 16, MV2 stages 32/48, MobileViT stages 64/80/96 with transformer dims 96/120/144 (depths
2/4/3, 4 heads, MLP ratio 2, patch 2x2), 1x1 head to 384, SiLU, 256x256 input.

Unfold/fold of patches is reshape/permute only, and attention is written out (Linear qkv +
matmul + softmax), so the model exports to plain ONNX (opset 17) with a dynamic batch.

Builders return random weights (``layers.init_cnn_weights``) with BatchNorm statistics set by
``layers.calibrate_batchnorm`` (one fixed random batch) so a fresh model is well conditioned."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvBNAct, calibrate_batchnorm, init_cnn_weights, make_divisible


def _cbs(inp: int, oup: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> ConvBNAct:
    return ConvBNAct(inp, oup, k, stride, groups=groups, act=nn.SiLU if act else None)


class MV2Block(nn.Module):
    """Inverted residual (expansion 4, depthwise 3x3, linear 1x1), residual when shapes match."""

    def __init__(self, inp: int, oup: int, stride: int, expand: float = 4.0) -> None:
        super().__init__()
        mid = make_divisible(inp * expand)
        self.use_res_connect = stride == 1 and inp == oup
        self.conv1_1x1 = _cbs(inp, mid, 1)
        self.conv2_kxk = _cbs(mid, mid, 3, stride, groups=mid)
        self.conv3_1x1 = _cbs(mid, oup, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        return x + y if self.use_res_connect else y


class Attention(nn.Module):
    """Multi-head self-attention: Linear qkv (bias), scaled dot product, softmax, Linear proj."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # x: [B', N, C]
        n, c = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(-1, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(-1, n, c))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder layer (LayerNorm, MHSA, LayerNorm, MLP with SiLU)."""

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """Local 3x3 conv + 1x1 to ``dim``, unfold into 2x2 patches, transformer over the patches
    at each of the 4 pixel positions, fold back, 1x1 projection and 3x3 fusion with the input."""

    def __init__(self, channels: int, dim: int, depth: int, patch: int = 2, num_heads: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.dim = dim
        self.conv_kxk = _cbs(channels, channels, 3)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[TransformerBlock(dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = _cbs(dim, channels, 1)
        self.conv_fusion = _cbs(2 * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        y = self.conv_1x1(self.conv_kxk(x))
        p, c = self.patch, self.dim
        nh, nw = y.shape[2] // p, y.shape[3] // p  # the input side must be a multiple of 32 * p
        # unfold [B, C, nh*p, nw*p] -> [B, p, p, nh, nw, C] -> [B*p*p, nh*nw, C]
        y = y.reshape(-1, c, nh, p, nw, p).permute(0, 3, 5, 2, 4, 1).reshape(-1, nh * nw, c)
        y = self.norm(self.transformer(y))
        # fold back: [B*p*p, nh*nw, C] -> [B, C, nh, p, nw, p] -> [B, C, H, W]
        y = y.reshape(-1, p, p, nh, nw, c).permute(0, 5, 3, 1, 4, 2).reshape(-1, c, nh * p, nw * p)
        return self.conv_fusion(torch.cat((shortcut, self.conv_proj(y)), dim=1))


class MobileViT(nn.Module):
    """MobileViT-XS: 3x3/2 stem (16), MV2 32, MV2 x3 48 (/2), then three [MV2 (/2) + MobileViT]
    stages 64/80/96, 1x1 conv to 384, global average pool, FC."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = _cbs(3, 16, 3, 2)
        stages: list[nn.Module] = [
            nn.Sequential(MV2Block(16, 32, 1)),
            nn.Sequential(MV2Block(32, 48, 2), MV2Block(48, 48, 1), MV2Block(48, 48, 1)),
        ]
        in_ch = 48
        for ch, dim, depth in ((64, 96, 2), (80, 120, 4), (96, 144, 3)):
            stages.append(nn.Sequential(MV2Block(in_ch, ch, 2), MobileViTBlock(ch, dim, depth)))
            in_ch = ch
        self.stages = nn.Sequential(*stages)
        self.final_conv = _cbs(in_ch, 384, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(384, num_classes)
        init_cnn_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.final_conv(self.stages(self.stem(x)))
        return self.fc(self.avgpool(x).flatten(1))


def mobilevit_xs(num_classes: int = 1000) -> MobileViT:
    """MobileViT-XS (Mehta & Rastegari 2022, arXiv:2110.02178), timm ``mobilevit_xs`` layout;
    2,317,848 parameters at 1000 classes (timm's figure). Input 256x256 (any multiple of 64)."""
    model = MobileViT(num_classes)
    calibrate_batchnorm(model, 256)
    return model
