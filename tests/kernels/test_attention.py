"""The attention kernel (softmax(Q K^T * scale + mask) V per batch and head, operands read by
strides) and the row softmax it uses, against NumPy, every variant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseinfer import _core

from .plan_op import run_op, supported

VARIANTS = [pytest.param(v, marks=pytest.mark.skipif(not supported(v), reason=f"CPU lacks {v}"))
            for v in _core.softmax_variants()]


def softmax_ref(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def to_layout(t, layout):
    """A [B, H, S, D] array stored as [B, S, H, D] ("bshd") or as is ("bhsd")."""
    return np.ascontiguousarray(t.transpose(0, 2, 1, 3)) if layout == "bshd" else t


def strides(shape_bhsd, layout):
    b, h, s, d = shape_bhsd
    return [s * h * d, d, h * d] if layout == "bshd" else [h * s * d, s * d, d]


def attention(isa, q, k, v, mask, scale, layouts, threads=1):
    """q [B,H,Sq,D], k [B,H,Sk,D], v [B,H,Sk,Dv] (NumPy, bhsd); mask broadcastable or None."""
    B, H, Sq, D = q.shape
    Sk, Dv = k.shape[2], v.shape[3]
    lq, lk, lv, lo = layouts
    st_ = strides(q.shape, lq) + strides(k.shape, lk) + strides(v.shape, lv) + strides((B, H, Sq, Dv), lo)
    ins = [to_layout(q, lq), to_layout(k, lk), to_layout(v, lv)]
    if mask is not None:
        mb, mh, mq, _ = mask.shape
        st_ += [mh * mq * Sk if mb > 1 else 0, mq * Sk if mh > 1 else 0, Sk if mq > 1 else 0]
        ins.append(mask)
    else:
        st_ += [0, 0, 0]
    op = _core.AttentionOp([B, H, Sq, Sk, D, Dv], st_, scale, mask is not None, isa)
    out_shape = (B, Sq, H, Dv) if lo == "bshd" else (B, H, Sq, Dv)
    out = run_op(op, ins, [(out_shape, np.float32)], threads)[0]
    return out.transpose(0, 2, 1, 3) if lo == "bshd" else out


@pytest.mark.parametrize("isa", VARIANTS)
@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), H=st.integers(1, 4), Sq=st.integers(1, 70), Sk=st.integers(1, 70), D=st.integers(1, 40),
       Dv=st.integers(1, 40), layouts=st.tuples(*[st.sampled_from(["bshd", "bhsd"])] * 4),
       mask_dims=st.sampled_from([None, (1, 1, 1), (0, 1, 1), (0, 1, 0), (0, 0, 0), (1, 0, 1)]),
       scale=st.sampled_from([1.0, 0.125]), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**31 - 1))
def test_random_shapes_layouts_and_masks(isa, B, H, Sq, Sk, D, Dv, layouts, mask_dims, scale, threads, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, H, Sq, D)).astype(np.float32)
    k = rng.standard_normal((B, H, Sk, D)).astype(np.float32)
    v = rng.standard_normal((B, H, Sk, Dv)).astype(np.float32)
    mask = None
    if mask_dims is not None:  # 1 marks a broadcast dim among (batch, head, query row)
        shape = tuple(1 if bcast else n for bcast, n in zip(mask_dims, (B, H, Sq))) + (Sk,)
        mask = np.where(rng.random(shape) < 0.2, -10000.0, 0.0).astype(np.float32)
        # Key 0 stays visible (as [CLS] does): a row masked everywhere sums scores near -1e4,
        # where float32 keeps only ~1e-3 of them, in any engine.
        mask[..., 0] = 0.0
    scores = scale * (q.astype(np.float64) @ k.astype(np.float64).transpose(0, 1, 3, 2))
    want = softmax_ref(scores + (mask if mask is not None else 0)) @ v
    got = attention(isa, q, k, v, mask, scale, layouts, threads)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(max(D, Sk)))


@pytest.mark.parametrize("isa", VARIANTS)
def test_bert_base_head_shapes(isa):
    """12 heads x 128 tokens x 64 dims, [B, S, H, D] in and out, a padding mask [B, 1, 1, S]."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 12, 128, 64)).astype(np.float32) for _ in range(3))
    mask = np.zeros((2, 1, 1, 128), np.float32)
    mask[1, ..., 70:] = -10000.0
    want = softmax_ref(q.astype(np.float64) @ k.transpose(0, 1, 3, 2) / 8 + mask) @ v
    got = attention(isa, q, k, v, mask, 1 / 8, ("bshd",) * 4, threads=2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 17, 128, 1000])
def test_softmax_last_axis(isa, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((33, n)) * 10).astype(np.float32)
    x[0] = -1e4  # all equal
    op = _core.SoftmaxOp(33, n, 1, False, isa)
    assert op.kernel_name == f"softmax_rows_{isa}"
    got = run_op(op, [x], [(x.shape, np.float32)], 2)[0]
    np.testing.assert_allclose(got, softmax_ref(x.astype(np.float64)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("isa", VARIANTS)
def test_softmax_of_minus_infinity(isa):
    """-inf entries get exactly 0; a row of only -inf is NaN (as ONNX's and NumPy's softmax)."""
    x = np.full((3, 20), -np.inf, np.float32)
    x[1, :5] = 1.0
    x[2] = np.linspace(-3, 3, 20)
    x[2, 7] = np.nan
    op = _core.SoftmaxOp(3, 20, 1, False, isa)
    got = run_op(op, [x], [(x.shape, np.float32)], 1)[0]
    assert np.isnan(got[0]).all() and np.isnan(got[2]).all()
    np.testing.assert_array_equal(got[1], np.r_[np.full(5, 0.2, np.float32), np.zeros(15, np.float32)])


def test_bad_arguments():
    with pytest.raises(ValueError, match="dims needs 6 values"):
        _core.AttentionOp([1, 1, 1, 1], [0] * 15, 1.0, False, "portable")
    op = _core.AttentionOp([1, 1, 0, 1, 1, 1], [0] * 15, 1.0, False, "portable")
    with pytest.raises(ValueError, match="every dimension must be >= 1"):
        run_op(op, [np.zeros(1, np.float32)] * 3, [((1,), np.float32)])
