"""NCHWc conv family: every ISA variant this CPU supports against a NumPy float64 reference."""
import numpy as np
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from sparseinfer import _core

from .reference import ACTIVATIONS, act_ref

ALL_ISAS = ["avx512", "avx2", "portable"]
_RANK = {"portable": 0, "avx2": 1, "avx512": 2}
ISAS = [
    pytest.param(i, marks=pytest.mark.skipif(_RANK[i] > _RANK[_core.best_isa()], reason=f"CPU lacks {i}"))
    for i in ALL_ISAS
]
SUPPORTED = [i for i in ALL_ISAS if _RANK[i] <= _RANK[_core.best_isa()]]


def ref_conv(x, w, b, stride, pads, dil, groups):
    """Loop-over-taps float64 reference; pads = (top, left, bottom, right)."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    OH = (H + pads[0] + pads[2] - dil[0] * (R - 1) - 1) // stride[0] + 1
    OW = (W + pads[1] + pads[3] - dil[1] * (S - 1) - 1) // stride[1] + 1
    out = np.zeros((N, K, OH, OW))
    Kg = K // groups
    for g in range(groups):
        xs = xp[:, g * Cg:(g + 1) * Cg]
        for r in range(R):
            for s in range(S):
                h0, w0 = r * dil[0], s * dil[1]
                patch = xs[:, :, h0:h0 + stride[0] * (OH - 1) + 1:stride[0], w0:w0 + stride[1] * (OW - 1) + 1:stride[1]]
                out[:, g * Kg:(g + 1) * Kg] += np.einsum("nchw,kc->nkhw", patch,
                                                         w[g * Kg:(g + 1) * Kg, :, r, s].astype(np.float64))
    if b is not None:
        out += b.astype(np.float64)[None, :, None, None]
    return out


def act_params(act):
    return {"clip": (-0.5, 1.5), "hardsigmoid": (0.2, 0.5)}.get(act, (0.0, 0.0))


def to_nchwc(x, isa):
    return _core.reorder_to_nchwc(np.ascontiguousarray(x, dtype=np.float32), isa)


def check_conv(isa, N, C, H, W, K, R, S, stride, pads, dil, groups, act="none", bias=True, residual=False,
               seed=0, threads=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, C // groups, R, S)) / np.sqrt(C // groups * R * S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if bias else None
    alpha, beta = act_params(act)
    conv = _core.ConvNchwc(w, b, stride=stride, pads=pads, dilations=dil, groups=groups, input_shape=(N, C, H, W),
                           activation=act, alpha=alpha, beta=beta, isa=isa)
    ref = ref_conv(x, w, b, stride, pads, dil, groups)
    res = None
    if residual:
        res_nchw = rng.standard_normal(ref.shape).astype(np.float32)
        res = to_nchwc(res_nchw, isa)
        ref = ref + res_nchw
    ref = act_ref(ref, act, alpha, beta)
    xin = x if conv.input_is_nchw else to_nchwc(x, isa)
    y = conv.run(xin, residual=res, num_threads=threads)
    B = _core.nchwc_block(isa)
    assert y.shape == (N, -(-K // B), ref.shape[2], ref.shape[3], B)
    # channels beyond K are padding: exactly zero whatever the epilogue
    flat = np.moveaxis(y, 4, 2).reshape(N, -1, ref.shape[2], ref.shape[3])
    assert np.all(flat[:, K:] == 0), "padding channels must stay exactly 0"
    got = _core.reorder_to_nchw(y, K, isa)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4 * max(1.0, np.abs(ref).max()))
    return conv, xin, res, y


KERNELS = [(1, 1), (3, 3), (5, 5), (7, 7), (1, 7), (7, 1)]


@st.composite
def conv_case(draw, grouping):
    R, S = draw(st.sampled_from(KERNELS))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    if draw(st.integers(0, 3)) == 0:  # unpadded: with a 1x1 kernel, the conv_1x1 kernel
        pads = (0, 0, 0, 0)
    if grouping == "depthwise":
        C = draw(st.integers(1, 40))
        K, groups = C, C
    elif grouping == "grouped":
        groups = 2
        C = 2 * draw(st.integers(1, 20))
        K = 2 * draw(st.integers(1, 20))
    else:
        groups = 1
        C = draw(st.integers(1, 40))
        K = draw(st.integers(1, 40))
    eff_r, eff_s = dil[0] * (R - 1) + 1, dil[1] * (S - 1) + 1
    H = draw(st.integers(max(1, eff_r - pads[0] - pads[2]), 20))
    W = draw(st.integers(max(1, eff_s - pads[1] - pads[3]), 20))
    N = draw(st.integers(1, 2))
    return N, C, H, W, K, R, S, stride, pads, dil, groups


SETTINGS = dict(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("isa", ISAS)
@settings(**SETTINGS)
@given(case=conv_case("dense"), act=st.sampled_from(ACTIVATIONS), residual=st.booleans(), bias=st.booleans())
def test_conv_dense_random(isa, case, act, residual, bias):
    check_conv(isa, *case, act=act, bias=bias, residual=residual)


@pytest.mark.parametrize("isa", ISAS)
@settings(**SETTINGS)
@given(case=conv_case("depthwise"), act=st.sampled_from(ACTIVATIONS), residual=st.booleans())
def test_conv_depthwise_random(isa, case, act, residual):
    conv, *_ = check_conv(isa, *case, act=act, residual=residual)
    assert "depthwise" in conv.kernel_name or case[1] <= 4


@pytest.mark.parametrize("isa", ISAS)
@settings(**dict(SETTINGS, max_examples=80))
@given(case=conv_case("grouped"), act=st.sampled_from(ACTIVATIONS), residual=st.booleans())
def test_conv_grouped_random(isa, case, act, residual):
    conv, *_ = check_conv(isa, *case, act=act, residual=residual)
    N, C, H, W, K = case[:5]
    assert ("depthwise" if C == K == 2 else "grouped") in conv.kernel_name


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_with_bias_and_residual(isa, act):
    # K = 19: a partial last block, where sigmoid(0) / hardsigmoid(0) would leak into padding lanes
    check_conv(isa, 1, 21, 9, 13, 19, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, act=act, residual=True)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case,kind", [
    ((1, 32, 12, 14, 48, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1), "conv_direct"),
    # small padded map with many input channels: the flat walk over a padded copy, partial sums
    # kept across channel chunks, batch 2
    ((2, 300, 7, 7, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1), "conv_direct"),
    # wider than the flat walk's limit: edge tiles over a zero-filled copy of their window
    ((1, 16, 5, 40, 24, 3, 3, (1, 1), (1, 2, 1, 0), (1, 1), 1), "conv_direct"),
    # a pad wider than a register tile (several edge tiles per side), dilation 2, many channels
    # (the edge copy follows the channel chunks), stride 2 and 5x5
    ((1, 70, 6, 29, 18, 3, 3, (1, 1), (0, 8, 1, 9), (1, 2), 1), "conv_direct"),
    ((2, 9, 9, 37, 17, 5, 5, (2, 2), (2, 2, 2, 2), (1, 1), 1), "conv_direct"),
    ((1, 35, 11, 10, 20, 3, 3, (2, 2), (1, 0, 2, 1), (2, 2), 1), "conv_direct"),
    ((1, 64, 7, 7, 40, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1), "conv_1x1"),
    ((2, 24, 9, 9, 70, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1), "conv_1x1"),
    ((2, 20, 8, 11, 12, 1, 1, (1, 3), (0, 0, 0, 0), (1, 1), 1), "conv_1x1"),
    ((1, 3, 23, 21, 24, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1), "conv_first_layer"),
    ((1, 3, 16, 16, 16, 3, 3, (2, 2), (0, 0, 1, 1), (1, 1), 1), "conv_first_layer"),
    ((1, 40, 13, 11, 40, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 40), "conv_depthwise"),
    ((1, 24, 12, 12, 24, 5, 5, (2, 2), (2, 1, 2, 2), (1, 1), 24), "conv_depthwise"),
    ((1, 16, 8, 8, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 16), "conv_grouped_reference"),
])
def test_kernel_choice_and_values(isa, case, kind):
    conv, *_ = check_conv(isa, *case, act="relu", residual=True)
    assert conv.kernel_name.startswith(kind) and conv.kernel_name.endswith(isa)
    assert conv.input_is_nchw == (kind == "conv_first_layer")
    assert conv.weight_bytes > 0


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", [
    (1, 64, 14, 14, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 64, 14, 14, 128, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (2, 64, 14, 13, 72, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    (2, 200, 7, 7, 40, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 3, 32, 32, 64, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),
    (1, 32, 9, 56, 24, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 48, 15, 15, 48, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 48),
    (1, 16, 6, 6, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2),
])
def test_threads_identical(isa, case):
    conv, xin, res, y1 = check_conv(isa, *case, act="silu", residual=True)
    y2 = conv.run(xin, residual=res, num_threads=2)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("isa", ISAS)
# (4x4 blocks: channels and positions past a multiple of 4, positions past one 64-position tile)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 16, 4, 4), (2, 37, 3, 9), (1, 8, 1, 33),
                                   (1, 20, 7, 7), (1, 64, 9, 10), (2, 35, 8, 8), (1, 6, 1, 3)])
def test_reorder_round_trip(isa, shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    B = _core.nchwc_block(isa)
    y = _core.reorder_to_nchwc(x, isa)
    assert y.shape == (shape[0], -(-shape[1] // B), shape[2], shape[3], B)
    flat = np.moveaxis(y, 4, 2).reshape(shape[0], -1, shape[2], shape[3])
    np.testing.assert_array_equal(flat[:, :shape[1]], x)
    assert np.all(flat[:, shape[1]:] == 0)
    np.testing.assert_array_equal(_core.reorder_to_nchw(y, shape[1], isa), x)
    np.testing.assert_array_equal(_core.reorder_to_nchw(_core.reorder_to_nchwc(x, isa, num_threads=2), shape[1], isa,
                                                        num_threads=2), x)


def test_block_sizes():
    assert _core.nchwc_block("portable") == 8
    if "avx2" in SUPPORTED:
        assert _core.nchwc_block("avx2") == 8
    if "avx512" in SUPPORTED:
        assert _core.nchwc_block("avx512") == 16


def test_bad_inputs_are_value_errors():
    isa = SUPPORTED[0]
    B = _core.nchwc_block(isa)
    w = np.ones((8, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.ConvNchwc(w, None, input_shape=(1, 4, 5, 5), isa="sse9")
    with pytest.raises(ValueError, match="activation"):
        _core.ConvNchwc(w, None, input_shape=(1, 4, 5, 5), activation="gelu2", isa=isa)
    with pytest.raises(ValueError, match="float32"):
        _core.ConvNchwc(w.astype(np.float64), None, input_shape=(1, 4, 5, 5), isa=isa)
    with pytest.raises(ValueError):
        _core.ConvNchwc(w, None, input_shape=(1, 5, 5, 5), isa=isa)  # C mismatch
    with pytest.raises(ValueError):
        _core.ConvNchwc(w, np.ones(3, np.float32), input_shape=(1, 4, 5, 5), isa=isa)  # bias shape
    with pytest.raises(ValueError):
        _core.ConvNchwc(w, None, input_shape=(1, 4, 2, 2), isa=isa)  # window larger than input
    with pytest.raises(ValueError):
        _core.ConvNchwc(w, None, stride=(0, 1), input_shape=(1, 4, 5, 5), isa=isa)
    with pytest.raises(ValueError):
        _core.ConvNchwc(w, None, groups=3, input_shape=(1, 4, 5, 5), isa=isa)
    conv = _core.ConvNchwc(np.ones((8, 8, 3, 3), np.float32), None, input_shape=(1, 8, 5, 5), isa=isa)
    with pytest.raises(ValueError, match="shape"):
        conv.run(np.ones((1, 1, 5, 4, B), np.float32))
    with pytest.raises(ValueError, match="float32"):
        conv.run(np.ones((1, 1, 5, 5, B), np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        conv.run(np.ones((1, 1, 5, 10, B), np.float32)[:, :, :, ::2])
    with pytest.raises(ValueError, match="residual"):
        conv.run(np.ones((1, 1, 5, 5, B), np.float32), residual=np.ones((1, 1, 5, 5, B), np.float32))
    with pytest.raises(ValueError):
        conv.run(np.ones((1, 1, 5, 5, B), np.float32), num_threads=0)
    with pytest.raises(ValueError):
        conv.run([[1.0]])
    with pytest.raises(ValueError):
        _core.reorder_to_nchw(np.ones((1, 2, 3, 3, B), np.float32), 3, isa)


@pytest.mark.skipif(_core.best_isa() == "avx512", reason="every ISA is supported here")
def test_unsupported_isa_is_value_error():
    with pytest.raises(ValueError, match="not supported"):
        _core.ConvNchwc(np.ones((8, 4, 3, 3), np.float32), None, input_shape=(1, 4, 5, 5), isa="avx512")
