"""Every variant of the f32 spmm family (sparse W x dense channel-major input) against a NumPy
float64 reference: the ISA kernels over the compressed weights, "avx512-generated", the code
generated for the weights (``_core.spmm(..., generated=True)``), reading packed copies of the input,
and "avx512-generated-in-place", the code that reads the input where it is (``in_place=True``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseinfer import _core

from .reference import ACT_PARAMS, ACTIVATIONS, act_ref

ISA_ORDER = ["portable", "avx2", "avx512"]
BEST = ISA_ORDER.index(_core.best_isa())
VARIANTS = [
    pytest.param(v, marks=pytest.mark.skipif(ISA_ORDER.index(v.split("-")[0]) > BEST,
                                             reason=f"CPU lacks {v.split('-')[0]} (best: {_core.best_isa()})"))
    for v in _core.spmm_variants() + ["avx512-generated", "avx512-generated-in-place"]
]


def base(variant: str) -> str:
    """The ISA the variant's weights are compressed for."""
    return variant.split("-")[0]


def weights(w, offsets, variant, **kw):
    return _core.SparseWeights(w, offsets, base(variant), **kw)


def spmm(variant, sw, *args, **kw):
    return _core.spmm(sw, *args, generated="-generated" in variant, in_place=variant.endswith("-in-place"), **kw)
SPARSITIES = [0.0, 0.5, 0.9, 0.99, 1.0]


def sparse_weights(rng, M, K, sparsity):
    w = rng.standard_normal((M, K)).astype(np.float32)
    w[rng.random((M, K)) < sparsity] = 0
    return w


def reference(w, x, bias=None, residual=None, act="none", alpha=0.0, beta=0.0):
    acc = w.astype(np.float64) @ x.astype(np.float64)
    if bias is not None:
        acc = acc + bias[:, None]
    if residual is not None:
        acc = acc + residual
    return act_ref(acc, act, alpha, beta)


def assert_close(got, want, K):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(max(K, 1)))


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("isa", VARIANTS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(M=st.integers(1, 70), K=st.integers(1, 90),
       Q=st.one_of(st.integers(1, 20), st.integers(1, 300)),
       sparsity=st.sampled_from(SPARSITIES), plain=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_random_shapes(isa, M, K, Q, sparsity, plain, seed):
    rng = np.random.default_rng(seed)
    w = sparse_weights(rng, M, K, sparsity)
    x = rand(rng, K, Q)
    if plain:
        got = spmm(isa, weights(w, None, isa), x)
    else:  # explicit offsets k * Q over a flat buffer
        offs = np.arange(K, dtype=np.int64) * Q
        got = spmm(isa, weights(w, offs, isa), x.ravel(), Q)
    assert got.shape == (M, Q) and got.dtype == np.float32
    assert_close(got, reference(w, x), K)


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_edge_widths(isa, sparsity):
    """Q around every tile and vector width (1, 7, 8, 15, 16, 17, ..., 2 tiles + 1)."""
    rng = np.random.default_rng(1)
    tile = _core.spmm_tile(base(isa))
    qs = sorted({1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, tile - 1, tile,
                 tile + 1, 2 * tile + 5, 3 * tile})
    w = sparse_weights(rng, 9, 40, sparsity)
    bias = rand(rng, 9)
    for Q in qs:
        x = rand(rng, 40, Q)
        res = rand(rng, 9, Q)
        got = spmm(isa, weights(w, None, isa), x, bias=bias, residual=res, activation="relu")
        assert_close(got, reference(w, x, bias, res, "relu"), 40)


@pytest.mark.parametrize("isa", VARIANTS)
def test_single_nonzero_and_degenerate(isa):
    rng = np.random.default_rng(2)
    for M, K, Q in [(1, 1, 1), (1, 1, 100), (5, 1, 33), (1, 37, 70), (13, 29, 129)]:
        w = np.zeros((M, K), dtype=np.float32)
        w[rng.integers(M), rng.integers(K)] = 2.5
        x = rand(rng, K, Q)
        assert_close(spmm(isa, weights(w, None, isa), x), reference(w, x), K)
    # all-zero matrix and all-zero rows: output = act(bias + residual)
    w = sparse_weights(rng, 12, 20, 0.5)
    w[[0, 3, 11]] = 0
    x = rand(rng, 20, 45)
    bias = rand(rng, 12)
    res = rand(rng, 12, 45)
    for wz in (w, np.zeros_like(w)):
        sw = weights(wz, None, isa)
        got = spmm(isa, sw, x, bias=bias, residual=res, activation="tanh")
        assert_close(got, reference(wz, x, bias, res, "tanh"), 20)
    assert weights(np.zeros((4, 6), np.float32), None, isa).nnz == 0
    # Q = 0: no-op, empty output
    sw = weights(w, None, isa)
    assert spmm(isa, sw, np.zeros((20, 0), np.float32)).shape == (12, 0)
    # K = 0: output = bias
    got = spmm(isa, weights(np.zeros((3, 0), np.float32), None, isa),
                     np.zeros((0, 5), np.float32), 5, bias=np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(got, np.repeat(np.arange(3, dtype=np.float32)[:, None], 5, 1))


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_epilogue(isa, act, with_bias, with_residual):
    rng = np.random.default_rng(3)
    alpha, beta = ACT_PARAMS.get(act, (0.0, 0.0))
    for M, K, Q in [(19, 70, 131), (1, 5, 3)]:
        w = sparse_weights(rng, M, K, 0.7) * 0.3
        x = rand(rng, K, Q)
        bias = rand(rng, M) if with_bias else None
        res = rand(rng, M, Q) if with_residual else None
        got = spmm(isa, weights(w, None, isa), x, bias=bias, residual=res,
                         activation=act, alpha=alpha, beta=beta)
        assert_close(got, reference(w, x, bias, res, act, alpha, beta), K)


@pytest.mark.parametrize("isa", VARIANTS)
def test_residual_aliasing_out_and_strided_out(isa):
    rng = np.random.default_rng(4)
    M, K, Q = 23, 50, 77
    w = sparse_weights(rng, M, K, 0.8)
    x = rand(rng, K, Q)
    sw = weights(w, None, isa)
    c = rand(rng, M, Q)
    want = reference(w, x, None, c, "relu")
    ret = spmm(isa, sw, x, residual=c, out=c, activation="relu")
    assert ret is c
    assert_close(c, want, K)
    # out as a view with a wider row stride, residual with yet another stride
    out_wide = np.full((M, Q + 9), 7.0, dtype=np.float32)
    out = out_wide[:, 3:3 + Q]
    res = rand(rng, M, Q + 5)[:, :Q]
    spmm(isa, sw, x, residual=res, out=out)
    assert_close(out, reference(w, x, None, res), K)
    assert (out_wide[:, :3] == 7).all() and (out_wide[:, 3 + Q:] == 7).all()


def conv3x3_reference(w4, plane):
    """w4: [Cout, Cin, 3, 3], plane: [Cin, H+2, W+2] (zero-padded) -> [Cout, H, W] (float64)."""
    cout, cin = w4.shape[:2]
    H, W = plane.shape[1] - 2, plane.shape[2] - 2
    out = np.zeros((cout, H, W))
    p = plane.astype(np.float64)
    for r in range(3):
        for s in range(3):
            out += np.einsum("oc,chw->ohw", w4[:, :, r, s].astype(np.float64), p[:, r:r + H, s:s + W])
    return out


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("sparsity", [0.0, 0.9])
@pytest.mark.parametrize("cin, cout, H, W", [(6, 10, 9, 13), (24, 10, 160, 147)])
def test_conv3x3_offsets(isa, sparsity, cin, cout, H, W):
    """Offsets c*plane + r*Wp + s express a 3x3 stride-1 conv over a zero-padded plane: output
    position q = h * Wp + w (rows of width Wp, the last 2 columns of each row are junk). The
    large case's input spans more than 2 MiB: in-place generated code then prefetches the next
    tile's input lines while one runs."""
    rng = np.random.default_rng(5)
    Hp, Wp = H + 2, W + 2
    x = rand(rng, cin, H, W)
    plane = np.zeros((cin, Hp, Wp), dtype=np.float32)
    plane[:, 1:1 + H, 1:1 + W] = x
    w4 = sparse_weights(rng, cout, cin * 9, sparsity).reshape(cout, cin, 3, 3)
    offs = np.array([c * Hp * Wp + r * Wp + s for c in range(cin) for r in range(3) for s in range(3)],
                    dtype=np.int64)
    Q = (H - 1) * Wp + W  # last valid output position + 1: every offset + Q stays in the plane
    bias = rand(rng, cout)
    sw = weights(np.ascontiguousarray(w4.reshape(cout, -1)), offs, isa)
    got = spmm(isa, sw, plane.ravel(), Q, bias=bias)
    got_hw = np.zeros((cout, H * Wp), dtype=np.float32)
    got_hw[:, :Q] = got
    got_hw = got_hw.reshape(cout, H, Wp)[:, :, :W]
    assert_close(got_hw, conv3x3_reference(w4, plane) + bias[:, None, None], cin * 9)


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("cin, cout, nb, H, W", [(3, 5, 1, 1, 1), (6, 10, 2, 7, 7), (16, 33, 3, 14, 14),
                                                 (9, 30, 1, 11, 37)])
def test_mapped_input_is_a_conv_over_padded_planes(isa, sparsity, cin, cout, nb, H, W):
    """map=(row_len, row_stride, img_len, img_stride): exactly the output pixels of a 3x3 stride-1
    conv over nb zero-padded planes per channel (as the conv ops run it), rows of W pixels Wp
    apart, images Hp x Wp apart; with bias, residual and ReLU in the epilogue."""
    rng = np.random.default_rng(17)
    Hp, Wp = H + 2, W + 2
    planes = np.zeros((cin, nb, Hp, Wp), dtype=np.float32)
    planes[:, :, 1:1 + H, 1:1 + W] = rand(rng, cin, nb, H, W)
    w4 = sparse_weights(rng, cout, cin * 9, sparsity).reshape(cout, cin, 3, 3)
    offs = np.array([c * nb * Hp * Wp + r * Wp + s for c in range(cin) for r in range(3) for s in range(3)],
                    dtype=np.int64)
    Q = nb * H * W
    bias, res = rand(rng, cout), rand(rng, cout, Q)
    sw = weights(np.ascontiguousarray(w4.reshape(cout, -1)), offs, isa)
    got = spmm(isa, sw, planes.ravel(), Q, bias=bias, residual=res, activation="relu", map=(W, Wp, H * W, Hp * Wp))
    conv = np.stack([conv3x3_reference(w4, planes[:, i]) for i in range(nb)], axis=1).reshape(cout, Q)
    assert_close(got, np.maximum(conv + bias[:, None] + res, 0), cin * 9)


def conv_reference(w4, x, pads, dil):
    """float64 stride-1 conv of x [cin, H, W] (zero padding pads = (top, left, bottom, right))."""
    cout, cin, R, S = w4.shape
    H, W = x.shape[1:]
    t, l, b, r_ = pads
    p = np.zeros((cin, H + t + b, W + l + r_))
    p[:, t:t + H, l:l + W] = x
    OH, OW = H + t + b - dil * (R - 1), W + l + r_ - dil * (S - 1)
    out = np.zeros((cout, OH, OW))
    for r in range(R):
        for s in range(S):
            out += np.einsum("oc,chw->ohw", w4[:, :, r, s].astype(np.float64),
                             p[:, r * dil:r * dil + OH, s * dil:s * dil + OW])
    return out


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("cin, cout, nb, H, W, R, pads, dil", [
    (3, 5, 1, 1, 1, 3, (1, 1, 1, 1), 1),        # one pixel: every tap but the centre is padding
    (6, 10, 2, 7, 7, 3, (1, 1, 1, 1), 1),       # 3x3 same, two images
    (16, 33, 3, 14, 14, 3, (1, 1, 1, 1), 1),
    (9, 30, 1, 11, 37, 3, (1, 1, 1, 1), 1),     # rows wider than a vector
    (4, 12, 1, 17, 17, 5, (2, 1, 2, 3), 1),     # 5x5, asymmetric pads
    (8, 8, 2, 12, 12, 3, (2, 2, 2, 2), 2),      # dilated
    (5, 7, 1, 6, 40, 3, (0, 0, 0, 0), 1),       # valid: no padding read at all
])
def test_mapped_input_with_implicit_padding_is_a_conv(isa, sparsity, cin, cout, nb, H, W, R, pads, dil):
    """taps=(...): the conv ops' stride-1 paths with no padded copy. The input is the unpadded
    planes (C x nb x H x W), the offsets count from the padded window's corner, and every tap
    whose pixel falls outside its plane reads 0, on every variant that packs. Generated code
    reading in place clips taps to the rows only: it refuses that map, and takes the planes
    with their padding rows (pad_top 0 in the map), as the conv ops give it."""
    rng = np.random.default_rng(23)
    x = rand(rng, cin, nb, H, W)
    w4 = sparse_weights(rng, cout, cin * R * R, sparsity).reshape(cout, cin, R, R)
    OH, OW = H + pads[0] + pads[2] - dil * (R - 1), W + pads[1] + pads[3] - dil * (R - 1)
    Q = nb * OH * OW
    bias, res = rand(rng, cout), rand(rng, cout, Q)
    conv = np.stack([conv_reference(w4, x[:, i], pads, dil) for i in range(nb)], axis=1).reshape(cout, Q)
    want = np.maximum(conv + bias[:, None] + res, 0)

    def run(planes, rows, top):
        offs = np.array([c * nb * rows * W + r * dil * W + s * dil
                         for c in range(cin) for r in range(R) for s in range(R)], dtype=np.int64)
        sw = weights(np.ascontiguousarray(w4.reshape(cout, -1)), offs, isa)
        return spmm(isa, sw, planes.ravel(), Q, bias=bias, residual=res, activation="relu",
                    map=(OW, W, OH * OW, rows * W), taps=(R, R, rows, W, top, pads[1], dil, dil))

    if not isa.endswith("-in-place"):
        assert_close(run(x, H, pads[0]), want, cin * R * R)
    elif pads[0] > 0:
        with pytest.raises(ValueError, match="implicit padding only along rows"):
            run(x, H, pads[0])
    with_rows = np.zeros((cin, nb, pads[0] + H + pads[2], W), np.float32)
    with_rows[:, :, pads[0]:pads[0] + H] = x
    assert_close(run(with_rows, pads[0] + H + pads[2], 0), want, cin * R * R)


needs_avx512 = pytest.mark.skipif(BEST < ISA_ORDER.index("avx512"), reason=f"CPU lacks avx512 (best: {_core.best_isa()})")


def planes_at_lane(shape, lane, values):
    """``values`` in a buffer whose first float lies at ``lane`` of a 64-byte line, with a line of
    slack (NaN) on both sides: code loading whole lines reads it, and must mask it all away."""
    n = int(np.prod(shape))
    buf = np.full(n + 64, np.nan, np.float32)
    start = (-buf.ctypes.data % 64) // 4 + 16 + lane
    planes = buf[start:start + n].reshape(shape)
    planes[...] = values
    return planes


@needs_avx512
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("lane", [0, 5])
@pytest.mark.parametrize("cin, cout, nb, H, W, R, pads, dil", [
    (3, 5, 1, 1, 1, 3, (1, 1, 1, 1), 1),        # one pixel
    (16, 33, 1, 14, 14, 3, (1, 1, 1, 1), 1),    # rows of 14: lanes shift by 14 per row
    (9, 30, 1, 11, 37, 3, (1, 1, 1, 1), 1),     # rows wider than a vector
    (6, 10, 2, 6, 8, 3, (1, 1, 1, 1), 1),       # two images 8 x 16 floats apart
    (4, 12, 1, 17, 17, 5, (2, 3, 2, 1), 1),     # 5x5, pad_left 3
    (8, 8, 2, 12, 12, 3, (2, 2, 2, 2), 2),      # dilated, images 192 floats apart
])
def test_in_place_code_from_whole_lines_is_a_conv(sparsity, lane, cin, cout, nb, H, W, R, pads, dil):
    """lines=True: in-place code that loads whole 64-byte lines and shifts each column's vector
    out of them (what same-size convs run over their padded planes) equals the conv, and the
    code that loads across lines bit for bit (the same FMAs in the same order), wherever in its
    line the first vector starts, with NaN in the slack lines it reads."""
    rng = np.random.default_rng(29)
    x = rand(rng, cin, nb, H, W)
    w4 = sparse_weights(rng, cout, cin * R * R, sparsity).reshape(cout, cin, R, R)
    OH, OW = H + pads[0] + pads[2] - dil * (R - 1), W + pads[1] + pads[3] - dil * (R - 1)
    assert OW == W  # same-size: the vectors run over whole images
    Q, rows = nb * OH * OW, pads[0] + H + pads[2]
    bias, res = rand(rng, cout), rand(rng, cout, Q)
    conv = np.stack([conv_reference(w4, x[:, i], pads, dil) for i in range(nb)], axis=1).reshape(cout, Q)
    want = np.maximum(conv + bias[:, None] + res, 0)
    with_rows = np.zeros((cin, nb, rows, W), np.float32)
    with_rows[:, :, pads[0]:pads[0] + H] = x
    # the window's corner (pad_left before the planes) at `lane`
    planes = planes_at_lane(with_rows.shape, (lane + pads[1]) % 16, with_rows)
    offs = np.array([c * nb * rows * W + r * dil * W + s * dil
                     for c in range(cin) for r in range(R) for s in range(R)], dtype=np.int64)
    sw = _core.SparseWeights(np.ascontiguousarray(w4.reshape(cout, -1)), offs, "avx512")
    kw = dict(bias=bias, residual=res, activation="relu", generated=True, in_place=True,
              map=(OW, W, OH * OW, rows * W), taps=(R, R, rows, W, 0, pads[1], dil, dil))
    got = _core.spmm(sw, planes.ravel(), Q, lines=True, **kw)
    assert_close(got, want, cin * R * R)
    np.testing.assert_array_equal(got, _core.spmm(sw, planes.ravel(), Q, **kw))


@needs_avx512
def test_in_place_code_from_whole_lines_refuses_vectors_elsewhere():
    """Code made for vectors at one lane of a line cannot run vectors at others: images (or rows)
    whose stride is not a multiple of 16 floats put them there, and run() says so."""
    rng = np.random.default_rng(30)
    cin, cout, nb, H, W = 4, 6, 2, 7, 7  # images of 9 x 7 = 63 floats
    rows = H + 2
    planes = planes_at_lane((cin, nb, rows, W), 1, 0.0)
    offs = np.array([c * nb * rows * W + r * W + s for c in range(cin) for r in range(3) for s in range(3)],
                    dtype=np.int64)
    sw = _core.SparseWeights(sparse_weights(rng, cout, cin * 9, 0.5), offs, "avx512")
    with pytest.raises(ValueError, match="start at lane 0 of a line"):
        _core.spmm(sw, planes.ravel(), nb * H * W, generated=True, in_place=True, lines=True,
                   map=(W, W, H * W, rows * W), taps=(3, 3, rows, W, 0, 1, 1, 1))
    with pytest.raises(ValueError, match="lines=True needs in_place=True"):
        _core.spmm(sw, planes.ravel(), nb * H * W, generated=True, lines=True,
                   map=(W, W, H * W, rows * W), taps=(3, 3, rows, W, 0, 1, 1, 1))


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("Q", [16, 20, 49, 64, 131])
def test_packed_and_in_place_paths_agree(isa, Q):
    """Inputs whose rows are not vector-aligned (a row length Q that is not a multiple of 16, or
    a base pointer off a 64-byte boundary) go through the packed path; both paths must give the
    reference's result, bit-identical to each other when the only difference is the base."""
    rng = np.random.default_rng(11)
    M, K = 37, 45
    w = sparse_weights(rng, M, K, 0.8)
    x = rand(rng, K, Q)
    bias, res = rand(rng, M), rand(rng, M, Q)
    offs = np.arange(K, dtype=np.int64) * Q
    sw = weights(w, offs, isa)
    assert sw.offset_alignment == {16: 16, 20: 4, 49: 1, 64: 16, 131: 1}[Q]
    want = reference(w, x, bias, res, "relu")
    buf = np.zeros(K * Q + 64, dtype=np.float32)
    base = (-buf.ctypes.data % 64) // 4  # first 64-byte aligned element
    results = []
    for shift in (0, 1, 3):  # aligned base, then 4 and 12 bytes off
        flat = buf[base + shift:base + shift + K * Q]
        flat[:] = x.ravel()
        got = spmm(isa, sw, flat, Q, bias=bias, residual=res, activation="relu")
        assert_close(got, want, K)
        results.append(got)
    np.testing.assert_array_equal(results[1], results[2])
    if Q % 16 != 0:  # packed in all three: the same sums in the same order
        np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("table", [False, True])
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.999, 1.0])
def test_one_position_matrix_vector(isa, table, sparsity):
    """Q == 1 runs as a gathered matrix-vector product: rows of every length around the 16/32
    nonzeros per step, offsets computed (k * stride) or read from the table (reversed rows),
    with and without column panels."""
    rng = np.random.default_rng(12)
    M, K = 67, 1500
    w = sparse_weights(rng, M, K, sparsity)
    for m, n in enumerate([0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49]):  # exact nonzero counts
        w[m] = 0
        w[m, rng.choice(K, n, replace=False)] = rng.standard_normal(n)
    stride = 3
    x = rand(rng, K * stride)  # input k at k * stride (the table reverses the order)
    offs = (K - 1 - np.arange(K, dtype=np.int64)) * stride if table else np.arange(K, dtype=np.int64) * stride
    xs = x[offs]
    bias, res = rand(rng, M), rand(rng, M, 1)
    for panels in (True, False):  # rows cut into panel segments, or whole (the ops' choice at Q == 1)
        sw = weights(w, offs, isa, column_panels=panels)
        assert sw.panels == (-(-K // _core.spmm_panel_k(base(isa))) if panels else 1)
        for threads in (1, 2):
            got = spmm(isa, sw, x, 1, bias=bias, residual=res, activation="relu", num_threads=threads)
            assert_close(got, reference(w, xs[:, None], bias, res, "relu"), K)


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("table", [False, True])
def test_column_panels(isa, table):
    """K over three panels (computed panel by panel, partial sums kept between them): rows with
    nonzeros in one panel only, none at all, or one at each panel edge; residual written in
    place; every Q edge, one and two threads (row-split tasks), offsets computed or from the
    table (reversed rows: a permuted, packed input)."""
    rng = np.random.default_rng(13)
    pk = _core.spmm_panel_k(base(isa))
    M, K = 400, 2 * pk + 37  # enough work at Q = 17 for row-split tasks on two threads
    w = sparse_weights(rng, M, K, 0.9)
    w[0] = 0
    for m, (k0, k1) in enumerate([(0, pk), (pk, 2 * pk), (2 * pk, K)], start=1):
        w[m] = 0
        w[m, k0:k1] = rand(rng, k1 - k0)  # one panel only
    w[4] = 0
    w[4, [0, pk - 1, pk, 2 * pk - 1, 2 * pk, K - 1]] = [1.0, -2.0, 3.0, 0.5, -1.5, 2.5]
    tile = _core.spmm_tile(base(isa))
    for Q in (2, 17, tile + 5, 3 * tile + 3):
        x = rand(rng, K, Q)
        offs = (K - 1 - np.arange(K, dtype=np.int64)) * Q if table else np.arange(K, dtype=np.int64) * Q
        flat = np.empty(K * Q, np.float32)
        flat.reshape(K, Q)[(offs // Q)] = x  # input row k at offs[k]
        sw = weights(w, offs, isa)
        assert sw.panels == 3
        bias = rand(rng, M)
        results = []
        for threads in (1, 2):
            c = rand(rng, M, Q) if threads == 1 else start.copy()
            start = c.copy()
            spmm(isa, sw, flat, Q, bias=bias, residual=c, out=c, activation="relu", num_threads=threads)
            assert_close(c, reference(w, x, bias, start, "relu"), K)
            results.append(c)
        np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("isa", [v for v in VARIANTS if "-generated" in v.values[0]])
def test_generated_code_past_l2(isa):
    """Code and weights past 1 MiB (at least 11 bytes per nonzero: 7 of FMA, 4 of weight) are
    prefetched a group of chunks ahead, across groups, panels and tiles: several of each here, on
    one thread and on two (row blocks split between the threads at the smaller Q, tiles at the
    larger), with rows that are empty or have nonzeros in one panel only."""
    rng = np.random.default_rng(17)
    pk = _core.spmm_panel_k("avx512")
    M, K = 300, 3 * pk + 20
    w = sparse_weights(rng, M, K, 0.5)
    w[7] = 0
    w[8, pk:] = 0
    assert np.count_nonzero(w) * 11 > 1 << 20
    for Q in (37, 600):
        x = rand(rng, K, Q)
        bias = rand(rng, M)
        sw = weights(w, np.arange(K, dtype=np.int64) * Q, isa)
        one = spmm(isa, sw, x.ravel(), Q, bias=bias, activation="relu", num_threads=1)
        two = spmm(isa, sw, x.ravel(), Q, bias=bias, activation="relu", num_threads=2)
        assert_close(one, reference(w, x, bias, None, "relu"), K)
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("isa", VARIANTS)
def test_threads_give_identical_results(isa):
    rng = np.random.default_rng(6)
    for M, K, Q, sp in [(300, 200, 700, 0.9), (2048, 64, 49, 0.8), (64, 256, 3136, 0.95), (5, 7, 1, 0.0)]:
        w = sparse_weights(rng, M, K, sp)
        w[:M // 3] = 0  # unbalanced rows
        x = rand(rng, K, Q)
        bias = rand(rng, M)
        sw = weights(w, None, isa)
        one = spmm(isa, sw, x, bias=bias, activation="silu", num_threads=1)
        two = spmm(isa, sw, x, bias=bias, activation="silu", num_threads=2)
        np.testing.assert_array_equal(one, two)
        assert_close(one, reference(w, x, bias, None, "silu"), K)


@pytest.mark.parametrize("isa", VARIANTS)
def test_properties_and_bytes_shrink(isa):
    rng = np.random.default_rng(7)
    M, K = 64, 256
    dense = sparse_weights(rng, M, K, 0.0)
    sparse = sparse_weights(rng, M, K, 0.9)
    sd = weights(dense, None, isa)
    ss = weights(sparse, None, isa)
    assert (ss.M, ss.K, ss.isa, ss.nnz) == (M, K, base(isa), int((sparse != 0).sum()))
    assert ss.bytes < sd.bytes
    assert ss.bytes <= 0.25 * dense.nbytes
    assert weights(np.zeros((M, K), np.float32), None, isa).bytes < ss.bytes


@pytest.mark.parametrize("isa", VARIANTS)
def bytes_formula(M, K, nnz, isa, column_panels=True):
    """6 bytes per nonzero (float value + uint16 column; 5, a uint8 column within its panel, for
    AVX-512 weights whose panels are at most 256 columns) + the int32 offset table (K) + int32
    segment starts (panels x M + 1) + int32 per-row nonzero counts (M + 1)."""
    panel_k = max(1, min(K, _core.spmm_panel_k(base(isa))) if column_panels else K)
    panels = max(1, -(-K // panel_k))
    narrow = base(isa) == "avx512" and panel_k <= 256
    return (5 if narrow else 6) * nnz + 4 * K + 4 * (panels * M + 1) + 4 * (M + 1)


@pytest.mark.parametrize("isa", VARIANTS)
def test_bytes_formula(isa):
    """bytes_formula exactly; the same for explicit offsets and after rescaling them."""
    rng = np.random.default_rng(8)
    for M, K, sp in [(64, 256, 0.9), (7, 3, 0.0), (1, 1, 1.0), (33, 1000, 0.99), (0, 5, 0.5), (4, 0, 0.5)]:
        w = sparse_weights(rng, M, K, sp)
        nnz = int((w != 0).sum())
        want = bytes_formula(M, K, nnz, isa)
        sw = weights(w, None, isa)
        assert (sw.nnz, sw.bytes, sw.panels) == (nnz, want, max(1, -(-K // _core.spmm_panel_k(base(isa)))))
        assert weights(w, np.arange(K, dtype=np.int64) * 3, isa).bytes == want


@pytest.mark.parametrize("isa", VARIANTS)
def test_k_at_the_column_limit(isa):
    """K = SPMM_MAX_K = 65536 (the largest uint16 column index, 65535, in use) is computed
    exactly; one column more is a clear error."""
    assert _core.SPMM_MAX_K == 65536
    rng = np.random.default_rng(9)
    M, K, Q = 3, _core.SPMM_MAX_K, 5
    w = sparse_weights(rng, M, K, 0.99)
    w[:, -1] = [1.5, -2.0, 0.5]  # the last columns are used
    w[1, -2] = 3.0
    x = rand(rng, K, Q)
    sw = weights(w, None, isa)
    assert sw.bytes == bytes_formula(M, K, sw.nnz, isa)
    assert_close(spmm(isa, sw, x), reference(w, x), K)
    offs = (K - 1 - np.arange(K, dtype=np.int64)) * Q  # rows read in reverse: offsets via the table
    got = spmm(isa, weights(w, offs, isa), x[::-1].ravel(), Q)
    assert_close(got, reference(w, x), K)
    with pytest.raises(ValueError, match="K = 65537 exceeds the spmm limit of 65536 columns"):
        weights(np.ones((1, K + 1), np.float32), None, isa)


def test_bad_inputs():
    isa = _core.best_isa()
    w = np.ones((3, 4), dtype=np.float32)
    x = np.ones((4, 5), dtype=np.float32)
    sw = weights(w, None, isa)
    with pytest.raises(ValueError, match="w must have dtype float32"):
        weights(w.astype(np.float64), None, isa)
    with pytest.raises(ValueError, match="2-D"):
        weights(np.ones(4, np.float32), None, isa)
    with pytest.raises(ValueError, match="C-contiguous"):
        weights(np.ones((4, 3), np.float32).T, None, isa)
    with pytest.raises(ValueError, match="col_offsets must be an int64"):
        weights(w, np.arange(4, dtype=np.int32), isa)
    with pytest.raises(ValueError, match="K=4 entries"):
        weights(w, np.arange(3, dtype=np.int64), isa)
    with pytest.raises(ValueError, match=r"col_offsets\[1\] = -5 is negative"):
        weights(w, np.array([0, -5, 1, 2], dtype=np.int64), isa)
    with pytest.raises(ValueError, match="int32"):
        weights(w, np.array([0, 1, 2, 2**31], dtype=np.int64), isa)
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.SparseWeights(w, None, "sse9")
    with pytest.raises(ValueError, match="input must have dtype float32"):
        spmm(isa, sw, x.astype(np.float64))
    with pytest.raises(ValueError, match="K=4"):
        spmm(isa, sw, np.ones((5, 5), np.float32))
    with pytest.raises(ValueError, match="Q is required"):
        spmm(isa, sw, np.ones(20, np.float32))
    with pytest.raises(ValueError, match="need 24"):
        spmm(isa, sw, np.ones(20, np.float32), 6)
    with pytest.raises(ValueError, match="exceeds"):
        spmm(isa, sw, x, 6)
    with pytest.raises(ValueError, match="Q must be >= 0"):
        spmm(isa, sw, x, -1)
    with pytest.raises(ValueError, match="C-contiguous"):
        spmm(isa, sw, np.ones((5, 4), np.float32).T)
    offs = np.array([0, 10, 20, 30], dtype=np.int64)
    swo = weights(w, offs, isa)
    with pytest.raises(ValueError, match="beyond the input"):
        spmm(isa, swo, np.ones(34, np.float32), 5)
    assert spmm(isa, swo, np.ones(35, np.float32), 5).shape == (3, 5)
    with pytest.raises(ValueError, match="map needs weights built with col_offsets"):
        spmm(isa, sw, x, map=(5, 5, 5, 5))
    with pytest.raises(ValueError, match="img_len a multiple of row_len"):
        spmm(isa, swo, np.ones(64, np.float32), 6, map=(4, 5, 6, 12))
    with pytest.raises(ValueError, match="rows must not overlap"):
        spmm(isa, swo, np.ones(64, np.float32), 6, map=(3, 2, 6, 12))
    with pytest.raises(ValueError, match=r"reach beyond the input: max col_offset 30 \+ the last position's offset 6"):
        spmm(isa, swo, np.ones(36, np.float32), 6, map=(3, 4, 6, 12))  # position 5: row 1, col 2 -> 4 + 2
    assert spmm(isa, swo, np.ones(37, np.float32), 6, map=(3, 4, 6, 12)).shape == (3, 6)
    # implicit padding (taps): a 2x2 conv of one channel over 3x3 planes, pads 1
    sw4 = weights(w, np.array([0, 1, 3, 4], dtype=np.int64), isa)
    tap_map, taps = (4, 3, 16, 9), (2, 2, 3, 3, 1, 1, 1, 1)
    assert spmm(isa, sw4, np.ones(9, np.float32), 16, map=tap_map, taps=taps).shape == (3, 16)
    with pytest.raises(ValueError, match="taps needs a map"):
        spmm(isa, sw4, np.ones(9, np.float32), 16, taps=taps)
    with pytest.raises(ValueError, match=r"column 0's plane .* spans \[0, 9\) of an input of 8 floats"):
        spmm(isa, sw4, np.ones(8, np.float32), 16, map=tap_map, taps=taps)
    with pytest.raises(ValueError, match="K a multiple of taps_h x taps_w"):
        spmm(isa, sw4, np.ones(9, np.float32), 16, map=tap_map, taps=(3, 1, 3, 3, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="row_stride == in_w"):
        spmm(isa, sw4, np.ones(9, np.float32), 16, map=tap_map, taps=(2, 2, 3, 4, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="taps_h and taps_w both > 0"):
        spmm(isa, sw4, np.ones(9, np.float32), 16, map=tap_map, taps=(0, 2, 3, 3, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="bias"):
        spmm(isa, sw, x, bias=np.ones(4, np.float32))
    with pytest.raises(ValueError, match="residual must have shape"):
        spmm(isa, sw, x, residual=np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="out must have shape"):
        spmm(isa, sw, x, out=np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="unknown activation 'gelu9'"):
        spmm(isa, sw, x, activation="gelu9")
    with pytest.raises(ValueError, match="num_threads"):
        spmm(isa, sw, x, num_threads=0)


@pytest.mark.skipif(BEST == len(ISA_ORDER) - 1, reason="the CPU supports every variant")
def test_unsupported_isa_is_an_error():
    with pytest.raises(ValueError, match="not supported"):
        _core.SparseWeights(np.ones((2, 2), dtype=np.float32), None, ISA_ORDER[BEST + 1])


def test_generated_code_needs_avx512_weights():
    sw = _core.SparseWeights(np.ones((3, 4), np.float32), None, "portable")
    with pytest.raises(ValueError, match="compressed for portable, expected avx512"):
        _core.spmm(sw, np.ones((4, 5), np.float32), generated=True)
    with pytest.raises(ValueError, match="in_place=True needs generated=True"):
        _core.spmm(_core.SparseWeights(np.ones((3, 4), np.float32), None, "avx512"), np.ones((4, 5), np.float32),
                   in_place=True)
