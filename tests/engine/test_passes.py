"""Graph passes: structure of the optimized graph, and numerical equality with ONNX Runtime."""

import numpy as np
from onnx import helper

import sparseinfer
from sparseinfer.graph import import_onnx
from sparseinfer.graph.passes import eliminate_identities, fold_batchnorm, fuse_epilogues, optimize

from .conftest import f32, make_model, ort_run


def _conv_bn_model(rng, act_nodes, residual=False, extra_inits=None):
    c, k = 4, 6
    inits = {
        "w": rng.standard_normal((k, c, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(k).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, k).astype(np.float32),
        "beta": rng.standard_normal(k).astype(np.float32),
        "mean": rng.standard_normal(k).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, k).astype(np.float32),
        **(extra_inits or {}),
    }
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3)]
    last = "bn"
    inputs = [f32("x", ["N", c, 8, 8])]
    if residual:
        inputs.append(f32("r", ["N", k, 8, 8]))
        nodes.append(helper.make_node("Add", ["bn", "r"], ["sum"]))
        last = "sum"
    nodes += act_nodes(last)
    return make_model(nodes, inputs, [f32("y", ["N", k, 8, 8])], inits)


def test_batchnorm_folds_into_conv_and_epilogue_fuses(rng):
    model = _conv_bn_model(rng, lambda x: [helper.make_node("Relu", [x], ["y"])], residual=True)
    graph = optimize(import_onnx(model, {"x": (2, 4, 8, 8), "r": (2, 6, 8, 8)}))
    assert [n.op for n in graph.nodes] == ["FusedConv"]
    node = graph.nodes[0]
    assert node.attr("activation") == "relu" and node.inputs[3] == "r"
    engine = sparseinfer.compile_model(model, batch_size=2)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    r = rng.standard_normal((2, 6, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x, r])[0], ort_run(model, {"x": x, "r": r})[0], rtol=1e-4, atol=1e-4)


def test_silu_and_clip_patterns_fuse(rng):
    silu = lambda x: [helper.make_node("Sigmoid", [x], ["s"]), helper.make_node("Mul", [x, "s"], ["y"])]
    graph = optimize(import_onnx(_conv_bn_model(rng, silu), {"x": (1, 4, 8, 8)}))
    assert [(n.op, n.attr("activation")) for n in graph.nodes] == [("FusedConv", "silu")]

    clip_model = _conv_bn_model(rng, lambda x: [helper.make_node("Clip", [x, "lo", "hi"], ["y"])],
                                extra_inits={"lo": np.float32(0.0), "hi": np.float32(6.0)})
    graph = optimize(import_onnx(clip_model, {"x": (1, 4, 8, 8)}))
    n = graph.nodes[0]
    assert (n.op, n.attr("activation"), n.attr("alpha"), n.attr("beta")) == ("FusedConv", "clip", 0.0, 6.0)
    engine = sparseinfer.compile_model(clip_model)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32) * 3
    np.testing.assert_allclose(engine.run([x])[0], ort_run(clip_model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_standalone_batchnorm_becomes_mul_add(rng):
    k = 3
    inits = {"gamma": rng.uniform(0.5, 1.5, k).astype(np.float32), "beta": rng.standard_normal(k).astype(np.float32),
             "mean": rng.standard_normal(k).astype(np.float32), "var": rng.uniform(0.5, 2, k).astype(np.float32)}
    model = make_model([helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["y"])],
                       [f32("x", ["N", k, 5, 5])], [f32("y", ["N", k, 5, 5])], inits)
    graph = fold_batchnorm(import_onnx(model, {"x": (2, k, 5, 5)}))
    assert [n.op for n in graph.nodes] == ["Mul", "Add"]
    engine = sparseinfer.compile_model(model, batch_size=2)
    assert engine.fraction_of_native_ops == 1.0
    x = rng.standard_normal((2, k, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_conv_feeding_two_consumers_is_not_fused_into_one(rng):
    inits = {"w": rng.standard_normal((2, 2, 1, 1)).astype(np.float32)}
    model = make_model([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y1"]),
                        helper.make_node("Sigmoid", ["c"], ["y2"])],
                       [f32("x", [1, 2, 3, 3])], [f32("y1", [1, 2, 3, 3]), f32("y2", [1, 2, 3, 3])], inits)
    graph = fuse_epilogues(import_onnx(model, {"x": (1, 2, 3, 3)}))
    assert [n.op for n in graph.nodes] == ["FusedConv", "Relu", "Sigmoid"]
    assert graph.nodes[0].attr("activation") == "none"


def test_gemm_bias_and_matmul_add_fuse(rng):
    inits = {"w": rng.standard_normal((8, 5)).astype(np.float32), "b": rng.standard_normal(8).astype(np.float32),
             "w2": rng.standard_normal((8, 3)).astype(np.float32), "b2": rng.standard_normal(3).astype(np.float32)}
    model = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1, alpha=0.5, beta=2.0),
                        helper.make_node("Tanh", ["g"], ["t"]),
                        helper.make_node("MatMul", ["t", "w2"], ["m"]), helper.make_node("Add", ["m", "b2"], ["y"])],
                       [f32("x", ["N", 5])], [f32("y", ["N", 3])], inits)
    graph = optimize(import_onnx(model, {"x": (4, 5)}))
    assert [(n.op, n.attr("activation")) for n in graph.nodes] == [("FusedGemm", "tanh"), ("FusedGemm", "none")]
    engine = sparseinfer.compile_model(model, batch_size=4)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_identity_and_dropout_are_removed_but_outputs_keep_their_names(rng):
    model = make_model([helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Dropout", ["a"], ["b"]),
                        helper.make_node("Relu", ["b"], ["c"]), helper.make_node("Identity", ["c"], ["y"])],
                       [f32("x", [2, 3])], [f32("y", [2, 3])])
    graph = eliminate_identities(import_onnx(model, {"x": (2, 3)}))
    assert [n.op for n in graph.nodes] == ["Relu", "Identity"]
    assert graph.nodes[0].inputs == ("x",)
    engine = sparseinfer.compile_model(model)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(engine.run([x])[0], np.maximum(x, 0))


def test_shape_subgraph_folds_to_constants(rng):
    model = make_model([helper.make_node("Shape", ["x"], ["s"]),
                        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
                        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
                        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
                        helper.make_node("Reshape", ["x", "shape"], ["y"])],
                       [f32("x", ["N", 3, 4])], [f32("y", ["N", 12])],
                       {"zero": np.array(0, np.int64), "zero1": np.array([0], np.int64),
                        "minus1": np.array([-1], np.int64)})
    graph = optimize(import_onnx(model, {"x": (5, 3, 4)}))
    assert [n.op for n in graph.nodes] == ["Reshape"]
    assert graph.shapes["y"] == (5, 12)
    engine = sparseinfer.compile_model(model, batch_size=5)
    assert engine.fraction_of_native_ops == 1.0
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(engine.run([x])[0], x.reshape(5, 12))


def test_residual_produced_after_the_conv_keeps_topological_order(rng):
    """ResNet's downsample branch: the residual's conv comes after the main conv in node order."""
    c = 4
    inits = {k: rng.standard_normal((c, c, 1, 1)).astype(np.float32) for k in ("w1", "w2", "wd")}
    model = make_model([helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["ar"]),
                        helper.make_node("Conv", ["ar", "w2"], ["b"]),
                        helper.make_node("Conv", ["x", "wd"], ["d"]),
                        helper.make_node("Add", ["b", "d"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
                       [f32("x", [1, c, 5, 5])], [f32("y", [1, c, 5, 5])], inits)
    graph = optimize(import_onnx(model, {"x": (1, c, 5, 5)}))
    seen = set(graph.inputs) | set(graph.constants)
    for n in graph.nodes:
        assert all((not i) or i in seen for i in n.inputs), f"{n.name} reads a value produced later"
        seen.update(n.outputs)
    assert sorted(n.op for n in graph.nodes) == ["FusedConv"] * 3
    assert sum(bool(n.inputs[3]) for n in graph.nodes) == 1
    engine = sparseinfer.compile_model(model)
    x = rng.standard_normal((1, c, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_shape_subgraphs_fold_to_constants(rng):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, ConstantOfShape, Range, Cast,
    Equal/Where on constants, Expand: with static input shapes all of it becomes constants,
    leaving only the two nodes that touch data."""
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Gather", ["s", "one"], ["t"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"]),
        helper.make_node("Unsqueeze", ["t", "ax0"], ["tu"]),
        helper.make_node("Concat", ["bu", "tu", "two_four"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["y1"]),
        helper.make_node("Concat", ["bu", "tu"], ["bt"], axis=0),
        helper.make_node("ConstantOfShape", ["bt"], ["ones"], value=helper.make_tensor("v", 1, [1], [1.0])),
        helper.make_node("Range", ["zero", "t", "one"], ["pos"]),
        helper.make_node("Equal", ["pos", "three"], ["eq"]),
        helper.make_node("Where", ["eq", "neg", "pos_f0"], ["w"]),
        helper.make_node("Cast", ["pos"], ["pos_f"], to=1),
        helper.make_node("Add", ["w", "pos_f"], ["wp"]),
        helper.make_node("Expand", ["wp", "bt"], ["e"]),
        helper.make_node("Mul", ["e", "ones"], ["eo"]),
        helper.make_node("Unsqueeze", ["eo", "ax_last"], ["eo3"]),
        helper.make_node("Add", ["x", "eo3"], ["y2"]),
    ]
    inits = {"zero": i64(0), "one": i64(1), "three": i64(3), "ax0": i64([0]), "ax_last": i64([-1]), "two_four": i64([2, 4]),
             "neg": np.array(-1.0, np.float32), "pos_f0": np.array(0.0, np.float32)}
    model = make_model(nodes, [f32("x", ["N", "S", 8])], [f32("y1", ["N", "S", 2, 4]), f32("y2", ["N", "S", 8])], inits)
    graph = optimize(import_onnx(model, {"x": (2, 6, 8)}))
    assert sorted(n.op for n in graph.nodes) == ["Add", "Reshape"]
    engine = sparseinfer.compile_model(model, input_shapes={"x": (2, 6, 8)})
    assert engine.fraction_of_native_ops == 1.0
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    for got, want in zip(engine.run([x]), ort_run(model, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-6)
