"""Element-wise kernels (binary, compare, where, expand, cast, reduce, unary math) run as
plan ops against NumPy, over random broadcast shapes and every plan dtype they accept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from sparseinfer import _core

from .plan_op import run_op
from .reference import ACTIVATIONS, act_ref

DTYPES = [np.float32, np.int64, np.int32, np.bool_]
NAMES = {np.dtype(np.float32): "float32", np.dtype(np.int64): "int64", np.dtype(np.int32): "int32",
         np.dtype(np.bool_): "bool"}


def values(rng, shape, dtype):
    """Small integers (so equality happens often), in the requested dtype."""
    v = rng.integers(-3, 4, shape)
    return (v > 0) if dtype == np.bool_ else v.astype(dtype)


def padded(shape, rank):
    return [1] * (rank - len(shape)) + list(shape)


bshapes = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=5, max_side=5)
bshapes3 = mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=5, max_side=5)


@settings(max_examples=60, deadline=None)
@given(shapes=bshapes, kind=st.sampled_from(["add", "sub", "mul", "div", "max", "min"]),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**31 - 1))
def test_binary_broadcast(shapes, kind, threads, seed):
    rng = np.random.default_rng(seed)
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32) + 3
    r = len(out)
    op = _core.BinaryOp(kind, padded(sa, r), padded(sb, r), list(out))
    want = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "max": np.maximum,
            "min": np.minimum}[kind](a, b)
    np.testing.assert_allclose(run_op(op, [a, b], [(out, np.float32)], threads)[0], want, rtol=1e-6)


COMPARE = {"equal": np.equal, "less": np.less, "greater": np.greater, "less_or_equal": np.less_equal,
           "greater_or_equal": np.greater_equal, "not_equal": np.not_equal}
LOGIC = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}


@settings(max_examples=100, deadline=None)
@given(shapes=bshapes, dtype=st.sampled_from(DTYPES), kind=st.sampled_from(sorted(COMPARE) + sorted(LOGIC)),
       seed=st.integers(0, 2**31 - 1))
def test_compare(shapes, dtype, kind, seed):
    if kind in LOGIC:
        dtype = np.bool_  # the logic ops take bool operands
    rng = np.random.default_rng(seed)
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    a, b = values(rng, sa, dtype), values(rng, sb, dtype)
    r = len(out)
    op = _core.CompareOp(kind, NAMES[np.dtype(dtype)], padded(sa, r), padded(sb, r), list(out))
    want = {**COMPARE, **LOGIC}[kind](a, b)
    got = run_op(op, [a, b], [(out, np.bool_)])[0]
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, want)


def test_compare_float_nan():
    a = np.array([np.nan, 1.0, 2.0], np.float32)
    b = np.array([np.nan, 1.0, np.nan], np.float32)
    op = _core.CompareOp("equal", "float32", [3], [3], [3])
    np.testing.assert_array_equal(run_op(op, [a, b], [((3,), np.bool_)])[0], [False, True, False])
    op = _core.CompareOp("not_equal", "float32", [3], [3], [3])  # IsNaN(x) is x != x
    np.testing.assert_array_equal(run_op(op, [a, a], [((3,), np.bool_)])[0], [True, False, False])


@settings(max_examples=80, deadline=None)
@given(shapes=bshapes3, dtype=st.sampled_from(DTYPES), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**31 - 1))
def test_where(shapes, dtype, threads, seed):
    rng = np.random.default_rng(seed)
    (sc, sx, sy), out = shapes.input_shapes, shapes.result_shape
    cond = rng.random(sc) > 0.5
    x, y = values(rng, sx, dtype), values(rng, sy, dtype)
    r = len(out)
    op = _core.WhereOp(padded(sc, r), padded(sx, r), padded(sy, r), list(out), np.dtype(dtype).itemsize)
    got = run_op(op, [cond, x, y], [(out, dtype)], threads)[0]
    np.testing.assert_array_equal(got, np.where(cond, x, y))


@settings(max_examples=60, deadline=None)
@given(shapes=bshapes, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_expand(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    (sx, _), out = shapes.input_shapes, shapes.result_shape
    x = values(rng, sx, dtype)
    op = _core.ExpandOp(padded(sx, len(out)), list(out), np.dtype(dtype).itemsize)
    np.testing.assert_array_equal(run_op(op, [x], [(out, dtype)])[0], np.broadcast_to(x, out))


def test_large_where_and_expand_run_threaded():
    """Above the parallel threshold (64K elements), rows are split across the pool."""
    rng = np.random.default_rng(5)
    cond = rng.random((1, 300, 1)) > 0.5
    x = rng.standard_normal((4, 300, 128)).astype(np.float32)
    y = np.float32(-7.0).reshape(1, 1, 1)
    op = _core.WhereOp([1, 300, 1], [4, 300, 128], [1, 1, 1], [4, 300, 128], 4)
    np.testing.assert_array_equal(run_op(op, [cond, x, y], [((4, 300, 128), np.float32)], 2)[0], np.where(cond, x, y))
    op = _core.ExpandOp([1, 300, 1], [4, 300, 128], 4)
    np.testing.assert_array_equal(run_op(op, [x[:1, :, :1].copy()], [((4, 300, 128), np.float32)], 2)[0],
                                  np.broadcast_to(x[:1, :, :1], (4, 300, 128)))


@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_cast(src, dst):
    rng = np.random.default_rng(0)
    if src == np.float32:  # fractions of both signs: float -> int truncates toward zero
        x = (rng.standard_normal(1000) * 50).astype(np.float32)
        x[:4] = [0.0, -0.0, 2.9, -2.9]
    elif src == np.bool_:
        x = rng.random(1000) > 0.5
    else:
        x = rng.integers(-10**6, 10**6, 1000).astype(src)
    op = _core.CastOp(x.size, NAMES[np.dtype(src)], NAMES[np.dtype(dst)])
    got = run_op(op, [x], [(x.shape, dst)])[0]
    assert got.dtype == dst
    np.testing.assert_array_equal(got, x.astype(dst))


def test_cast_large_int64_to_float_rounds():
    x = np.array([2**40 + 1, -(2**53), 16777217], np.int64)
    got = run_op(_core.CastOp(3, "int64", "float32"), [x], [((3,), np.float32)])[0]
    np.testing.assert_array_equal(got, x.astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data(),
       kind=st.sampled_from(["sum", "mean", "l2"]), seed=st.integers(0, 2**31 - 1))
def test_reduce(shape, data, kind, seed):
    rng = np.random.default_rng(seed)
    axes = data.draw(st.lists(st.sampled_from(range(len(shape))), min_size=1, unique=True))
    x = rng.standard_normal(shape).astype(np.float32)
    flags = [d in axes for d in range(len(shape))]
    x64 = x.astype(np.float64)
    want = {"sum": lambda: x64.sum(axis=tuple(axes), keepdims=True),
            "mean": lambda: x64.mean(axis=tuple(axes), keepdims=True),
            "l2": lambda: np.sqrt((x64 ** 2).sum(axis=tuple(axes), keepdims=True))}[kind]()
    got = run_op(_core.ReduceOp(shape, flags, kind), [x], [(want.shape, np.float32)])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_unary_activation(act):
    """UnaryOp runs the scalar definitions (epilogue.h) the vector variants are tested against."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(5000) * 3).astype(np.float32)
    x[:5] = [0.0, 1e-6, -1e-6, 4.5, -4.5]
    alpha, beta = (-0.5, 0.7) if act == "clip" else (0.2, 0.5) if act == "hardsigmoid" else (0.0, 0.0)
    got = run_op(_core.UnaryOp(x.size, act, alpha, beta), [x], [(x.shape, np.float32)])[0]
    np.testing.assert_allclose(got, act_ref(x.astype(np.float64), act, alpha, beta), rtol=2e-6, atol=1e-7)


def test_bad_names_and_types():
    with pytest.raises(ValueError, match="unknown comparison 'eq'"):
        _core.CompareOp("eq", "float32", [1], [1], [1])
    with pytest.raises(ValueError, match="unsupported element type 'float64'"):
        _core.CastOp(1, "float64", "float32")
    with pytest.raises(ValueError, match="unknown reduction 'max'"):
        _core.ReduceOp([2], [True], "max")
    with pytest.raises(ValueError, match="shapes do not broadcast"):
        run_op(_core.WhereOp([2], [3], [3], [3], 4), [np.ones(2, bool), np.ones(3, np.float32),
                                                      np.ones(3, np.float32)], [((3,), np.float32)])
