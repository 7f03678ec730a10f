"""The ONNX ops transformer encoders need, compiled natively: small graphs whose shape and
index parameters are constants (as in exported models), checked against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import sparseinfer

from .conftest import f32, make_model, ort_run


def out(name, rank, elem=TensorProto.FLOAT):
    """A graph output of known rank and unspecified dims."""
    return helper.make_tensor_value_info(name, elem, [f"{name}_{k}" for k in range(rank)])


def check_native(model, feeds, rtol=1e-5, atol=1e-6):
    engine = sparseinfer.compile_model(model, input_shapes={k: v.shape for k, v in feeds.items()})
    fallback = [(r.op, r.name) for r in engine.node_report if not r.native]
    assert not fallback, f"fell back: {fallback}"
    got = engine(**feeds)
    want = ort_run(model, feeds)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return engine


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [-1], [1], [1]),
    ([0, 2], [9, 100], [0, 2], [2, 3]),            # ends past the end are clamped
    ([-1], [-100], [2], [-2]),                     # negative step, end before the start
    ([5, -3], [1, 2**62], [-1, 1], [-1, 1]),       # INT64_MAX-like ends, negative axes
    ([3], [3], [0], [1]),                          # empty result
])
def test_slice_with_constant_parameters(rng, starts, ends, axes, steps):
    inits = {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64), "a": np.array(axes, np.int64),
             "t": np.array(steps, np.int64)}
    model = make_model([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], [f32("x", [4, 6, 8])],
                       [out("y", 3)], inits)
    check_native(model, {"x": rng.standard_normal((4, 6, 8)).astype(np.float32)})


def test_split_expand_where_equal_cast(rng):
    """HF-style attention-mask arithmetic on int64 and bool values, then float math."""
    inits = {"split": np.array([2, 3, 3], np.int64), "shape": np.array([2, 1, 4, 8], np.int64),
             "zero": np.array(0, np.int64), "neg": np.array(-1e4, np.float32)}
    nodes = [
        helper.make_node("Split", ["x", "split"], ["p0", "p1", "p2"], axis=1),
        helper.make_node("Equal", ["mask", "zero"], ["is_pad"]),                # int64 -> bool
        helper.make_node("Unsqueeze", ["is_pad", "axes"], ["is_pad4"]),
        helper.make_node("Expand", ["is_pad4", "shape"], ["pad_full"]),       # bool expand
        helper.make_node("Where", ["pad_full", "neg", "p1"], ["w"]),          # bool cond, f32 branches
        helper.make_node("Unsqueeze", ["mask", "axes"], ["mask4"]),            # int64 alias
        helper.make_node("Cast", ["mask4"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["p2", "mask_f"], ["m"]),
    ]
    inits["axes"] = np.array([1, 2], np.int64)
    model = make_model(nodes, [f32("x", [2, 8, 4, 8]), helper.make_tensor_value_info("mask", TensorProto.INT64, [2, 8])],
                       [out("p0", 4), out("w", 4), out("m", 4), out("pad_full", 4, TensorProto.BOOL)], inits)
    mask = np.ones((2, 8), np.int64)
    mask[1, 5:] = 0
    check_native(model, {"x": rng.standard_normal((2, 8, 4, 8)).astype(np.float32), "mask": mask})


@pytest.mark.parametrize("a_shape,b_shape", [
    ((2, 3, 5, 7), (2, 3, 7, 4)),   # attention-like batch
    ((2, 1, 5, 7), (3, 7, 4)),      # broadcast batch dims
    ((5, 7), (2, 7, 4)),            # 2-D a against a batch of b
    ((2, 5, 7), (7, 4)),            # activation x activation, b without batch: one big GEMM
    ((7,), (2, 7, 4)),              # 1-D a
    ((2, 5, 7), (7,)),              # 1-D b
])
def test_matmul_of_two_activations(rng, a_shape, b_shape):
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [f32("a", list(a_shape)), f32("b", list(b_shape))],
                       [out("y", np.matmul(np.empty(a_shape), np.empty(b_shape)).ndim)])
    feeds = {"a": rng.standard_normal(a_shape).astype(np.float32), "b": rng.standard_normal(b_shape).astype(np.float32)}
    engine = check_native(model, feeds, rtol=1e-5, atol=1e-5)
    assert engine.node_report[0].kernels[0].startswith("sgemm_batched")


@pytest.mark.parametrize("axis,scale_shape", [(-1, (16,)), (1, (6, 16)), (1, (1, 16)), (2, ())])
def test_layer_normalization_axes_and_broadcast_scale(rng, axis, scale_shape):
    inits = {"scale": (rng.standard_normal(scale_shape) + 1).astype(np.float32),
             "bias": rng.standard_normal((16,)).astype(np.float32)}
    model = make_model([helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=axis, epsilon=1e-6)],
                       [f32("x", [3, 6, 16])], [f32("y", [3, 6, 16])], inits)
    check_native(model, {"x": (rng.standard_normal((3, 6, 16)) * 3 + 1).astype(np.float32)}, rtol=1e-4, atol=1e-5)


def test_gather_of_activations_with_constant_index(rng):
    """x[:, 0]: the [CLS] vector of a sequence output."""
    model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], [f32("x", [2, 5, 8])],
                       [f32("y", [2, 8])], {"i": np.array(0, np.int64)})
    check_native(model, {"x": rng.standard_normal((2, 5, 8)).astype(np.float32)})


def test_math_ops(rng):
    nodes = [helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Abs", ["x"], ["a"]),
             helper.make_node("Sqrt", ["a"], ["s"]), helper.make_node("Pow", ["x", "three"], ["p"]),
             helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("ReduceL2", ["x"], ["l2"], axes=[1], keepdims=1)]
    model = make_model(nodes, [f32("x", [3, 50])], [out(n, 2) for n in ("e", "s", "p", "t", "l2")],
                       {"three": np.array(3.0, np.float32)}, opset=17)
    engine = sparseinfer.compile_model(model)
    got = engine(x=(x := rng.standard_normal((3, 50)).astype(np.float32)))
    for g, w in zip(got, ort_run(model, {"x": x})):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert {r.op for r in engine.node_report if not r.native} == {"Abs"}  # Abs is not one of ours
