"""Pooling: max / average in NCHWc and plain NCHW (the layout around sparse convs), global average,
on every supported ISA against NumPy."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from sparseinfer import _core

ALL_ISAS = ["avx512", "avx2", "portable"]
_RANK = {"portable": 0, "avx2": 1, "avx512": 2}
ISAS = [
    pytest.param(i, marks=pytest.mark.skipif(_RANK[i] > _RANK[_core.best_isa()], reason=f"CPU lacks {i}"))
    for i in ALL_ISAS
]


def out_size(n, k, s, pb, pe, d, ceil_mode):
    span = n + pb + pe - d * (k - 1) - 1
    o = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= n + pb:  # last window must start inside the input or left pad
        o -= 1
    return o


def ref_pool(x, kind, k, strides, pads, dil, count_include_pad, ceil_mode):
    N, C, H, W = x.shape
    OH = out_size(H, k[0], strides[0], pads[0], pads[2], dil[0], ceil_mode)
    OW = out_size(W, k[1], strides[1], pads[1], pads[3], dil[1], ceil_mode)
    out = np.zeros((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            vals, padded = [], 0
            for r in range(k[0]):
                ih = oh * strides[0] - pads[0] + r * dil[0]
                for s in range(k[1]):
                    iw = ow * strides[1] - pads[1] + s * dil[1]
                    if -pads[0] <= ih < H + pads[2] and -pads[1] <= iw < W + pads[3]:
                        padded += 1
                    if 0 <= ih < H and 0 <= iw < W:
                        vals.append(x[:, :, ih, iw].astype(np.float64))
            v = np.stack(vals)
            if kind == "max":
                out[:, :, oh, ow] = v.max(0)
            else:
                out[:, :, oh, ow] = v.sum(0) / (padded if count_include_pad else len(vals))
    return out


@st.composite
def pool_case(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = (draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)),
            draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)))
    eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
    H = draw(st.integers(max(1, eff[0] - pads[0] - pads[2], eff[0]), 16))
    W = draw(st.integers(max(1, eff[1] - pads[1] - pads[3], eff[1]), 16))
    C = draw(st.integers(1, 40))
    N = draw(st.integers(1, 2))
    return (N, C, H, W), k, strides, pads, dil


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pool_case(), kind=st.sampled_from(["max", "avg"]), cip=st.booleans(), ceil_mode=st.booleans())
def test_pool_random(isa, case, kind, cip, ceil_mode):
    shape, k, strides, pads, dil = case
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref = ref_pool(x, kind, k, strides, pads, dil, cip, ceil_mode)
    y = _core.pool_nchwc(_core.reorder_to_nchwc(x, isa), kind, k, strides=strides, pads=pads, dilations=dil,
                         count_include_pad=cip, ceil_mode=ceil_mode, channels=shape[1], isa=isa)
    B = _core.nchwc_block(isa)
    assert y.shape == (shape[0], -(-shape[1] // B), ref.shape[2], ref.shape[3], B)
    flat = np.moveaxis(y, 4, 2).reshape(shape[0], -1, ref.shape[2], ref.shape[3])
    assert np.all(flat[:, shape[1]:] == 0)
    np.testing.assert_allclose(_core.reorder_to_nchw(y, shape[1], isa), ref, rtol=1e-5, atol=1e-5)
    plain = _core.pool_nchwc(x, kind, k, strides=strides, pads=pads, dilations=dil, count_include_pad=cip,
                             ceil_mode=ceil_mode, isa=isa)
    assert plain.shape == ref.shape
    np.testing.assert_allclose(plain, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind,k,s,pads,cip,ceil", [
    ("max", (3, 3), (2, 2), (1, 1, 1, 1), False, False),  # ResNet stem pool
    ("max", (3, 3), (2, 2), (0, 0, 0, 0), False, True),   # ceil mode (GoogLeNet / SqueezeNet style)
    ("avg", (3, 3), (1, 1), (1, 1, 1, 1), True, False),
    ("avg", (3, 3), (1, 1), (1, 1, 1, 1), False, False),
    ("avg", (2, 2), (2, 2), (0, 0, 1, 1), True, True),
])
def test_pool_fixed_and_threads(isa, kind, k, s, pads, cip, ceil):
    x = np.random.default_rng(2).standard_normal((1, 37, 17, 17)).astype(np.float32)
    xc = _core.reorder_to_nchwc(x, isa)
    kw = dict(strides=s, pads=pads, count_include_pad=cip, ceil_mode=ceil, channels=37, isa=isa)
    y1 = _core.pool_nchwc(xc, kind, k, **kw)
    y2 = _core.pool_nchwc(xc, kind, k, num_threads=2, **kw)
    np.testing.assert_array_equal(y1, y2)
    ref = ref_pool(x, kind, k, s, pads, (1, 1), cip, ceil)
    np.testing.assert_allclose(_core.reorder_to_nchw(y1, 37, isa), ref, rtol=1e-5, atol=1e-5)
    del kw["channels"]
    p1 = _core.pool_nchwc(x, kind, k, **kw)
    np.testing.assert_array_equal(p1, _core.pool_nchwc(x, kind, k, num_threads=2, **kw))
    np.testing.assert_allclose(p1, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape,k,s", [((1, 64, 224, 224), (2, 2), (2, 2)), ((1, 3, 33, 70), (3, 3), (2, 2)),
                                       ((2, 5, 9, 31), (2, 3), (1, 3))])
def test_pool_plain_large_rows(isa, shape, k, s):
    """Plain NCHW rows longer than a vector (VGG's first pool: 224 columns) through the row
    buffer, interior and edge columns."""
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    for kind in ("max", "avg"):
        y = _core.pool_nchwc(x, kind, k, strides=s, pads=(0, 1, 1, 1), isa=isa, num_threads=2)
        np.testing.assert_allclose(y, ref_pool(x, kind, k, s, (0, 1, 1, 1), (1, 1), False, False),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(1, 64, 224, 224), (2, 5, 9, 31), (3, 7, 2, 2), (1, 1, 3, 3), (2, 300, 4, 6),
                                   (1, 2, 2, 5)])
@pytest.mark.parametrize("pads,ceil", [((0, 0, 0, 0), False), ((0, 0, 0, 0), True), ((0, 0, 1, 1), False)])
def test_pool_plain_2x2_stride2(isa, shape, pads, ceil):
    """2x2 windows at stride 2 (VGG's pools) take their own path when every window lies inside
    the image; odd sizes (the last row or column dropped, or with ceil mode or end padding a
    window over the edge: the general path), more rows than tasks, one thread or two."""
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    for kind in ("max", "avg"):
        for cip in (False, True):
            kw = dict(strides=(2, 2), pads=pads, count_include_pad=cip, ceil_mode=ceil, isa=isa)
            y = _core.pool_nchwc(x, kind, (2, 2), **kw)
            np.testing.assert_array_equal(y, _core.pool_nchwc(x, kind, (2, 2), num_threads=2, **kw))
            np.testing.assert_allclose(y, ref_pool(x, kind, (2, 2), (2, 2), pads, (1, 1), cip, ceil),
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 37, 7, 7), (1, 64, 3, 5), (1, 2048, 7, 7), (3, 9, 1, 13)])
def test_global_avg_pool(isa, shape):
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    y = _core.global_avg_pool_nchwc(_core.reorder_to_nchwc(x, isa), isa=isa, num_threads=2)
    B = _core.nchwc_block(isa)
    assert y.shape == (shape[0], -(-shape[1] // B), 1, 1, B)
    flat = y.reshape(shape[0], -1)
    assert np.all(flat[:, shape[1]:] == 0)
    ref = x.astype(np.float64).mean(axis=(2, 3))
    np.testing.assert_allclose(flat[:, :shape[1]], ref, rtol=1e-5, atol=1e-6)


def test_pool_bad_inputs():
    isa = "portable"
    x = np.zeros((1, 1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match="kind"):
        _core.pool_nchwc(x, "min", (2, 2), isa=isa)
    with pytest.raises(ValueError, match="NCHW shape"):
        _core.pool_nchwc(np.zeros((1, 4, 4), np.float32), "max", (2, 2), isa=isa)
    with pytest.raises(ValueError, match="NCHWc"):
        _core.pool_nchwc(np.zeros((1, 1, 4, 4, 3), np.float32), "max", (2, 2), isa=isa)
    with pytest.raises(ValueError):
        _core.pool_nchwc(x, "max", (5, 5), isa=isa)
    with pytest.raises(ValueError):
        _core.pool_nchwc(x, "max", (2, 2), strides=(0, 1), isa=isa)
    with pytest.raises(ValueError, match="float32"):
        _core.global_avg_pool_nchwc(x.astype(np.float64), isa=isa)
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.global_avg_pool_nchwc(x, isa="neon")
