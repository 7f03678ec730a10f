"""Transformer fusions: LayerNormalization from its decomposition, GELU (erf and tanh forms)
into one op and into the producing GEMM's epilogue, bias + residual in one GEMM epilogue.
Each checks the optimized graph's structure and the numbers against ONNX Runtime, and the
fused nodes' fallback expansion (for regions that run on ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import sparseinfer
from sparseinfer.fallback import FallbackRegion
from sparseinfer.graph import import_onnx
from sparseinfer.graph.passes import optimize

from .conftest import f32, make_model, ort_run

H = 24


def _ln_nodes(x, out, square="pow", divide="div", gamma=True, beta=True, axes=(-1,), opset=17):
    """The decomposed layer norm as exporters write it."""
    axes_kw = {"axes": list(axes)} if opset < 18 else {}
    axes_in = ["axes"] if opset >= 18 else []
    nodes = [helper.make_node("ReduceMean", [x] + axes_in, ["m"], **axes_kw),
             helper.make_node("Sub", [x, "m"], ["d"])]
    nodes.append(helper.make_node("Pow", ["d", "two"], ["d2"]) if square == "pow"
                 else helper.make_node("Mul", ["d", "d"], ["d2"]))
    nodes += [helper.make_node("ReduceMean", ["d2"] + axes_in, ["v"], **axes_kw),
              helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"])]
    n = "n" if gamma or beta else out
    if divide == "div":
        nodes.append(helper.make_node("Div", ["d", "s"], [n]))
    else:
        nodes += [helper.make_node("Reciprocal", ["s"], ["r"]), helper.make_node("Mul", ["r", "d"], [n])]
    cur = "n"
    if gamma:
        nodes.append(helper.make_node("Mul", [cur, "gamma"], ["g" if beta else out]))
        cur = "g"
    if beta:
        nodes.append(helper.make_node("Add", ["beta", cur], [out]))
    return nodes


def _ln_inits(rng, axes=(-1,)):
    return {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32), "axes": np.array(axes, np.int64),
            "gamma": (rng.standard_normal(H) + 1).astype(np.float32), "beta": rng.standard_normal(H).astype(np.float32)}


def _run(model, feeds, rtol=1e-4, atol=1e-5):
    engine = sparseinfer.compile_model(model, input_shapes={k: v.shape for k, v in feeds.items()})
    for got, want in zip(engine(**feeds), ort_run(model, feeds)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return engine


def _fallback_matches(model, feeds, graph):
    """The optimized graph run entirely as one ONNX Runtime region (every fused node expanded
    back to standard ops) gives the original model's outputs."""
    region = FallbackRegion(graph, graph.nodes, list(graph.inputs), list(graph.outputs), 1)
    for got, want in zip(region.run(feeds), ort_run(model, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("square,divide,gamma,beta", [
    ("pow", "div", True, True), ("mul", "reciprocal", True, True), ("pow", "div", False, True),
    ("mul", "div", True, False), ("pow", "reciprocal", False, False)])
def test_decomposed_layernorm_fuses(rng, opset, square, divide, gamma, beta):
    model = make_model(_ln_nodes("x", "y", square, divide, gamma, beta, opset=opset), [f32("x", [2, 5, H])],
                       [f32("y", [2, 5, H])], _ln_inits(rng), opset=opset)
    feeds = {"x": (rng.standard_normal((2, 5, H)) * 2 + 3).astype(np.float32)}
    graph = optimize(import_onnx(model, {"x": (2, 5, H)}))
    assert [(n.op, n.domain) for n in graph.nodes] == [("LayerNormalization", "" if opset >= 17 else "sparseinfer")]
    engine = _run(model, feeds)
    assert engine.node_report[0].native and engine.node_report[0].kernels[0].startswith("layer_norm")
    _fallback_matches(model, feeds, graph)


def test_layernorm_over_two_trailing_axes(rng):
    inits = _ln_inits(rng, axes=(-2, -1))
    inits["gamma"] = (rng.standard_normal((5, H)) + 1).astype(np.float32)
    model = make_model(_ln_nodes("x", "y", axes=(-2, -1), opset=13), [f32("x", [2, 5, H])], [f32("y", [2, 5, H])],
                       inits, opset=13)
    graph = optimize(import_onnx(model, {"x": (2, 5, H)}))
    assert [n.op for n in graph.nodes] == ["LayerNormalization"] and graph.nodes[0].attr("axis") == 1
    _run(model, {"x": rng.standard_normal((2, 5, H)).astype(np.float32)})


def test_near_misses_are_left_alone(rng):
    """A mean over a non-trailing axis, or a 'gamma' varying along a normalised-away axis, is
    not a layer norm; the graph still runs and matches."""
    inits = _ln_inits(rng, axes=(1,))
    model = make_model(_ln_nodes("x", "y", axes=(1,), opset=13), [f32("x", [2, 5, H])], [f32("y", [2, 5, H])], inits,
                       opset=13)
    graph = optimize(import_onnx(model, {"x": (2, 5, H)}))
    assert "LayerNormalization" not in [n.op for n in graph.nodes]
    _run(model, {"x": rng.standard_normal((2, 5, H)).astype(np.float32)})
    inits = _ln_inits(rng)
    inits["gamma"] = rng.standard_normal((5, 1)).astype(np.float32)
    model = make_model(_ln_nodes("x", "y", opset=13), [f32("x", [2, 5, H])], [f32("y", [2, 5, H])], inits, opset=13)
    graph = optimize(import_onnx(model, {"x": (2, 5, H)}))
    assert [n.op for n in graph.nodes][-2:] == ["Mul", "Add"]  # fused up to the normalisation only
    _run(model, {"x": rng.standard_normal((2, 5, H)).astype(np.float32)})


def _gelu_nodes(x, out, form):
    """GELU spelled as the exporters do; the product order varies."""
    if form.startswith("erf"):
        nodes = [helper.make_node("Div", [x, "sqrt2"], ["t"]) if form != "erf_mul" else
                 helper.make_node("Mul", ["rsqrt2", x], ["t"]),
                 helper.make_node("Erf", ["t"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"])]
    else:
        cube = ([helper.make_node("Pow", [x, "three"], ["c"])] if form == "tanh_pow" else
                [helper.make_node("Mul", [x, x], ["xx"]), helper.make_node("Mul", [x, "xx"], ["c"])])
        nodes = cube + [helper.make_node("Mul", ["k1", "c"], ["kc"]), helper.make_node("Add", [x, "kc"], ["i"]),
                        helper.make_node("Mul", ["i", "k2"], ["u"]), helper.make_node("Tanh", ["u"], ["e"]),
                        helper.make_node("Add", ["one", "e"], ["a"])]
    order = {"erf": "xa_half", "erf_mul": "half_first", "tanh_pow": "a_half", "tanh_mul": "xa_half"}[form]
    if order == "xa_half":
        nodes += [helper.make_node("Mul", [x, "a"], ["p"]), helper.make_node("Mul", ["p", "half"], [out])]
    elif order == "half_first":
        nodes += [helper.make_node("Mul", [x, "half"], ["h"]), helper.make_node("Mul", ["h", "a"], [out])]
    else:
        nodes += [helper.make_node("Mul", ["a", "half"], ["q"]), helper.make_node("Mul", [x, "q"], [out])]
    return nodes


GELU_CONSTS = {"sqrt2": np.array(np.sqrt(2), np.float32), "rsqrt2": np.array(1 / np.sqrt(2), np.float32),
               "one": np.array(1, np.float32), "half": np.array(0.5, np.float32), "three": np.array(3, np.float32),
               "k1": np.array(0.044715, np.float32), "k2": np.array(np.sqrt(2 / np.pi), np.float32)}


@pytest.mark.parametrize("form", ["erf", "erf_mul", "tanh_pow", "tanh_mul"])
def test_gelu_fuses_into_the_gemm_epilogue(rng, form):
    inits = dict(GELU_CONSTS, w=(rng.standard_normal((H, 40)) * 0.3).astype(np.float32),
                 b=rng.standard_normal(40).astype(np.float32))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["h0"])]
    nodes += _gelu_nodes("h0", "y", form)
    model = make_model(nodes, [f32("x", [2, 7, H])], [f32("y", [2, 7, 40])], inits)
    graph = optimize(import_onnx(model, {"x": (2, 7, H)}))
    assert [(n.op, n.attr("activation")) for n in graph.nodes] == \
        [("FusedGemm", "gelu" if form.startswith("erf") else "gelu_tanh")]
    feeds = {"x": rng.standard_normal((2, 7, H)).astype(np.float32)}
    _run(model, feeds)
    _fallback_matches(model, feeds, graph)


@pytest.mark.parametrize("form", ["erf", "tanh_pow"])
def test_standalone_gelu_is_one_native_op(rng, form):
    model = make_model(_gelu_nodes("x", "y", form), [f32("x", [3, 50])], [f32("y", [3, 50])], GELU_CONSTS)
    graph = optimize(import_onnx(model, {"x": (3, 50)}))
    assert [(n.op, n.attr("approximate")) for n in graph.nodes] == [("Gelu", "none" if form == "erf" else "tanh")]
    feeds = {"x": (rng.standard_normal((3, 50)) * 3).astype(np.float32)}
    engine = _run(model, feeds)
    assert engine.fraction_of_native_ops == 1.0
    _fallback_matches(model, feeds, graph)


def test_gelu_with_a_shared_intermediate_is_not_fused(rng):
    """If another node reads a value inside the pattern, fusing would lose it."""
    nodes = _gelu_nodes("x", "y", "erf") + [helper.make_node("Neg", ["e"], ["z"])]
    model = make_model(nodes, [f32("x", [3, 8])], [f32("y", [3, 8]), f32("z", [3, 8])], GELU_CONSTS)
    graph = optimize(import_onnx(model, {"x": (3, 8)}))
    assert "Gelu" not in [n.op for n in graph.nodes]
    _run(model, {"x": rng.standard_normal((3, 8)).astype(np.float32)})


def test_gemm_takes_bias_and_residual(rng):
    """x W + b + skip (a transformer's output projection) is one FusedGemm."""
    inits = {"w": rng.standard_normal((H, H)).astype(np.float32), "b": rng.standard_normal(H).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["mb"]),
             helper.make_node("Add", ["skip", "mb"], ["y"])]
    model = make_model(nodes, [f32("x", [4, H]), f32("skip", [4, H])], [f32("y", [4, H])], inits)
    graph = optimize(import_onnx(model, {"x": (4, H), "skip": (4, H)}))
    assert [n.op for n in graph.nodes] == ["FusedGemm"] and graph.nodes[0].inputs[3] == "skip"
    _run(model, {"x": rng.standard_normal((4, H)).astype(np.float32),
                 "skip": rng.standard_normal((4, H)).astype(np.float32)})


def _attention_model(rng, k_path="one", scale="div", mask="b11s", out_transpose=True, layout="bshd"):
    """Multi-head attention as exported from PyTorch: [B, S, H, D] projections transposed to
    heads, Q K^T, scale, + mask, Softmax, P V, transposed back."""
    B, S, Hh, D = 2, 9, 3, 8
    inits = {"c": np.array(np.sqrt(D) if scale == "div" else 1 / np.sqrt(D), np.float32)}
    nodes = []
    if layout == "bshd":
        shape = [B, S, Hh, D]
        nodes += [helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),
                  helper.make_node("Transpose", ["v"], ["vt"], perm=[0, 2, 1, 3])]
        if k_path == "one":
            nodes.append(helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]))
        else:
            nodes += [helper.make_node("Transpose", ["k"], ["k1"], perm=[0, 2, 1, 3]),
                      helper.make_node("Transpose", ["k1"], ["kt"], perm=[0, 1, 3, 2])]
        q, v = "qt", "vt"
    else:
        shape = [B, Hh, S, D]
        nodes.append(helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]))
        q, v = "q", "v"
    nodes.append(helper.make_node("MatMul", [q, "kt"], ["s0"]))
    cur = "s0"
    if scale:
        nodes.append(helper.make_node("Div" if scale == "div" else "Mul", [cur, "c"], ["s1"]))
        cur = "s1"
    inputs = [f32(n, shape) for n in "qkv"]
    feeds = {n: rng.standard_normal(shape).astype(np.float32) for n in "qkv"}
    if mask:
        mshape = {"b11s": [B, 1, 1, S], "bhss": [B, Hh, S, S], "s": [S]}[mask]
        nodes.append(helper.make_node("Add", ["m", cur], ["s2"]))
        cur = "s2"
        inputs.append(f32("m", mshape))
        feeds["m"] = np.where(rng.random(mshape) < 0.3, -10000.0, 0.0).astype(np.float32)
    nodes += [helper.make_node("Softmax", [cur], ["p"], axis=-1), helper.make_node("MatMul", ["p", v], ["o"])]
    out_shape = [B, Hh, S, D]
    if out_transpose:
        nodes.append(helper.make_node("Transpose", ["o"], ["y"], perm=[0, 2, 1, 3]))
        out_shape = [B, S, Hh, D]
    else:
        nodes.append(helper.make_node("Identity", ["o"], ["y"]))
    return make_model(nodes, inputs, [f32("y", out_shape)], inits), feeds


@pytest.mark.parametrize("k_path,scale,mask,out_transpose,layout", [
    ("one", "div", "b11s", True, "bshd"),      # BERT as our zoo exports it
    ("two", "mul", "bhss", True, "bshd"),      # K^T through two Transposes, per-head mask
    ("one", None, None, False, "bshd"),        # no scale, no mask, output left in heads
    ("one", "div", "s", True, "bhsd"),         # operands already [B, H, S, D]
])
def test_attention_fuses_into_one_node(rng, k_path, scale, mask, out_transpose, layout):
    model, feeds = _attention_model(rng, k_path, scale, mask, out_transpose, layout)
    graph = optimize(import_onnx(model, {k: v.shape for k, v in feeds.items()}))
    ops = [n.op for n in graph.nodes if n.op != "Identity"]
    assert ops == ["Attention"], ops
    att = graph.nodes[0]
    assert att.attr("q_layout") == layout and att.attr("out_layout") == ("bshd" if out_transpose else "bhsd")
    engine = _run(model, feeds)
    assert engine.node_report[0].kernels[0].startswith("attention_")
    _fallback_matches(model, feeds, graph)


def test_attention_probabilities_used_elsewhere_are_not_fused(rng):
    model, feeds = _attention_model(rng)
    model.graph.output.append(f32("p", [2, 3, 9, 9]))
    graph = optimize(import_onnx(model, {k: v.shape for k, v in feeds.items()}))
    assert "Attention" not in [n.op for n in graph.nodes]
    _run(model, feeds)
