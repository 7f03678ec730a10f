"""Whole models: the engine's outputs equal ONNX Runtime's (rtol and atol 1e-4) for every zoo
CNN and the MLP, dense and pruned, and the CNN families run fully native."""

import numpy as np
import onnx
import pytest

import sparseinfer
from sparseinfer import zoo
from sparseinfer.benchmark import make_inputs

from .conftest import ort_run

LIGHT = ["resnet18", "mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "efficientnet_lite0", "mlp6",
         "mobilevit_xs"]
HEAVY = ["resnet50", "vgg16", "vgg19", "inception_v3"]
# Expected to run entirely in our kernels (no fallback region).
FULLY_NATIVE = {"resnet18", "resnet50", "vgg16", "vgg19", "mobilenet_v1", "mobilenet_v2", "mlp6",
                "efficientnet_b0", "efficientnet_lite0", "inception_v3"}


def _check(stub, batch_size):
    path = zoo.resolve(stub)
    model = onnx.load(path)
    feeds = make_inputs(model, batch_size, seed=3)
    engine = sparseinfer.compile_model(path, batch_size=batch_size)
    got = engine(**feeds)
    want = ort_run(model, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    name = stub.split(":")[1].split("-")[0]
    if name in FULLY_NATIVE:
        fallback = sorted({r.op for r in engine.node_report if not r.native})
        assert not fallback, f"{stub}: ops fell back: {fallback}"
    return engine


@pytest.mark.parametrize("variant", ["dense", "pruned90"])
@pytest.mark.parametrize("name", LIGHT)
def test_light_models_match_onnxruntime(name, variant):
    _check(f"zoo:{name}-{variant}", batch_size=2)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dense", "pruned90"])
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_models_match_onnxruntime(name, variant):
    _check(f"zoo:{name}-{variant}", batch_size=1)


@pytest.mark.parametrize("variant", ["pruned80", "pruned95", "pruned90-block4"])
def test_other_pruned_variants_match_onnxruntime(variant):
    _check(f"zoo:resnet18-{variant}", batch_size=1)


@pytest.mark.parametrize("stub", ["zoo:resnet18-pruned90", "zoo:mobilenet_v2-pruned95", "zoo:resnet18-pruned90-block4"])
def test_pruned_models_with_every_conv_sparse_match_onnxruntime(stub, monkeypatch):
    """The sparse path on whole networks (the measured choice may pick either kernel)."""
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    engine = _check(stub, batch_size=2)
    sparse = [r for r in engine.node_report if r.choice and r.choice["chosen"] == "sparse"]
    assert sparse and all(r.kernels[0].startswith("spmm_conv" if r.op == "FusedConv" else "spmm_linear")
                          for r in sparse)
