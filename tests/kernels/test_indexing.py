"""Indexing kernels (gather, slice, split) run as plan ops against NumPy, for every plan dtype."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseinfer import _core
from sparseinfer.errors import InputError

from .plan_op import run_op

DTYPES = [np.float32, np.int64, np.int32, np.bool_]


def values(rng, shape, dtype):
    v = rng.integers(-1000, 1000, shape)
    return (v > 0) if dtype == np.bool_ else v.astype(dtype)


@settings(max_examples=80, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), idx_shape=st.lists(st.integers(1, 5), max_size=2),
       data=st.data(), dtype=st.sampled_from(DTYPES), idx_type=st.sampled_from([np.int64, np.int32]),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**31 - 1))
def test_gather(shape, idx_shape, data, dtype, idx_type, threads, seed):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = values(rng, shape, dtype)
    dim = shape[axis]
    idx = rng.integers(-dim, dim, idx_shape).astype(idx_type)  # negative indices count from the end
    want = np.take(x, idx, axis=axis)
    op = _core.GatherOp(int(np.prod(shape[:axis])), dim, int(np.prod(shape[axis + 1:])), np.dtype(dtype).itemsize,
                        idx.size, idx_type == np.int32)
    np.testing.assert_array_equal(run_op(op, [x, idx], [(want.shape, dtype)], threads)[0], want)


def test_gather_embedding_rows_threaded():
    """An embedding lookup big enough (> 256 KiB) to split across the pool."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((1000, 384)).astype(np.float32)
    ids = rng.integers(0, 1000, (4, 128))
    op = _core.GatherOp(1, 1000, 384, 4, ids.size, False)
    np.testing.assert_array_equal(run_op(op, [table, ids], [((4, 128, 384), np.float32)], 2)[0], table[ids])


@pytest.mark.parametrize("bad", [1000, -1001, 2**40])
def test_gather_index_out_of_range_is_an_error(bad):
    table = np.zeros((1000, 4), np.float32)
    ids = np.array([[3, 5], [bad, 7]], np.int64)
    op = _core.GatherOp(1, 1000, 4, 4, ids.size, False)
    with pytest.raises(IndexError, match=rf"Gather: index {bad} \(at flat position 2 of the indices\) is out of "
                                         r"range for an axis of size 1000 \(expected -1000 \.\. 999\)"):
        run_op(op, [table, ids], [((2, 2, 4), np.float32)])


@settings(max_examples=80, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), data=st.data(), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31 - 1))
def test_slice(shape, data, dtype, seed):
    rng = np.random.default_rng(seed)
    x = values(rng, shape, dtype)
    starts, steps, lens = [], [], []
    for d in shape:  # a valid in-bounds strided window per dimension
        step = data.draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
        start = data.draw(st.integers(0, d - 1))
        room = (d - 1 - start) // step + 1 if step > 0 else start // -step + 1
        lens.append(data.draw(st.integers(0, room)))
        starts.append(start)
        steps.append(step)
    want = x[np.ix_(*[s + k * np.arange(n) for s, k, n in zip(starts, steps, lens)])]
    op = _core.SliceOp(shape, starts, steps, lens, np.dtype(dtype).itemsize)
    np.testing.assert_array_equal(run_op(op, [x], [(lens, dtype)])[0], want)


@settings(max_examples=50, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data(), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31 - 1))
def test_split(shape, data, dtype, seed):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1))
    cuts = sorted(data.draw(st.lists(st.integers(0, shape[axis]), max_size=3)))
    x = values(rng, shape, dtype)
    want = np.split(x, cuts, axis=axis)
    widths = [w.shape[axis] for w in want]
    op = _core.SplitOp(int(np.prod(shape[:axis])), widths, int(np.prod(shape[axis + 1:])), np.dtype(dtype).itemsize)
    got = run_op(op, [x], [(w.shape, dtype) for w in want])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_engine_reports_bad_token_id_as_input_error():
    """Through the engine, an out-of-vocabulary id is an InputError naming the index."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import sparseinfer

    table = numpy_helper.from_array(np.ones((10, 3), np.float32), "table")
    g = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"])], "g",
                          [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3])], [table])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    engine = sparseinfer.compile_model(model)
    assert engine.fraction_of_native_ops == 1.0
    np.testing.assert_array_equal(engine.run([np.array([[1, 2, 3, -1]])])[0], np.ones((1, 4, 3), np.float32))
    with pytest.raises(InputError, match="Gather: index 10 .* axis of size 10"):
        engine.run([np.array([[1, 2, 10, 0]])])
