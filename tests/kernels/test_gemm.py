"""Every variant of the f32 GEMM family against a NumPy float64 reference."""

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
    pytest.param(v, marks=pytest.mark.skipif(ISA_ORDER.index(v) > BEST,
                                             reason=f"CPU lacks {v} (best: {_core.best_isa()})"))
    for v in _core.gemm_variants()
]


def reference(a, b, trans_b=False, bias=None, residual=None, act="none", alpha=0.0, beta=0.0):
    b64 = b.astype(np.float64)
    acc = a.astype(np.float64) @ (b64.T if trans_b else b64)
    if bias is not None:
        acc = acc + bias
    if residual is not None:
        acc = acc + residual
    return act_ref(acc, act, alpha, beta)


def assert_close(got, want, K):
    tol = 1e-4 * np.sqrt(max(K, 1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=tol)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def run(isa, a, b, trans_b=False, packed=True, **kw):
    if packed:
        return _core.sgemm_packed(a, _core.PackedB(b, trans_b, isa), **kw)
    return _core.sgemm(a, b, trans_b=trans_b, isa=isa, **kw)


@pytest.mark.parametrize("isa", VARIANTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(M=st.integers(1, 300), N=st.integers(1, 300), K=st.integers(1, 300),
       trans_b=st.booleans(), packed=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_random_shapes(isa, M, N, K, trans_b, packed, seed):
    rng = np.random.default_rng(seed)
    a = rand(rng, M, K)
    b = rand(rng, N, K) if trans_b else rand(rng, K, N)
    got = run(isa, a, b, trans_b, packed)
    assert got.shape == (M, N) and got.dtype == np.float32
    assert_close(got, reference(a, b, trans_b), K)


def edge_shapes(isa):
    mr, nr = _core.gemm_tile(isa)
    dims_m = sorted({1, 2, mr - 1, mr, mr + 1, 2 * mr + 1})
    dims_n = sorted({1, 2, nr - 1, nr, nr + 1, 2 * nr - 1})
    dims_k = [1, 2, 255, 256, 257, 600]  # around the K block (256): multi-block accumulation
    shapes = [(1, 1, 1)]
    shapes += [(m, nr + 1, 17) for m in dims_m if m >= 1]
    shapes += [(mr + 1, n, 17) for n in dims_n if n >= 1]
    shapes += [(mr + 1, nr + 3, k) for k in dims_k]
    return shapes


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("trans_b", [False, True])
def test_edges(isa, trans_b):
    rng = np.random.default_rng(1)
    for M, N, K in edge_shapes(isa):
        a = rand(rng, M, K)
        b = rand(rng, N, K) if trans_b else rand(rng, K, N)
        bias = rand(rng, N)
        res = rand(rng, M, N)
        got = run(isa, a, b, trans_b, bias=bias, residual=res, activation="relu")
        assert_close(got, reference(a, b, trans_b, bias, res, "relu"), K)


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_epilogue(isa, act, with_bias, with_residual):
    rng = np.random.default_rng(2)
    mr, nr = _core.gemm_tile(isa)
    # K > 256: the epilogue must survive accumulation over several K blocks.
    for M, N, K in [(2 * mr + 3, 2 * nr + 5, 300), (1, 7, 5)]:
        a = rand(rng, M, K) * 0.2
        b = rand(rng, K, N) * 0.2
        bias = rand(rng, N) if with_bias else None
        res = rand(rng, M, N) if with_residual else None
        alpha, beta = ACT_PARAMS.get(act, (0.0, 0.0))
        got = _core.sgemm_packed(a, _core.PackedB(b, False, isa), bias=bias, residual=res,
                                 activation=act, alpha=alpha, beta=beta)
        assert_close(got, reference(a, b, False, bias, res, act, alpha, beta), K)


@pytest.mark.parametrize("isa", VARIANTS)
def test_strided_rows_and_out(isa):
    """lda > K (a view of a wider array), ldc > N (out= a view), residual with its own stride."""
    rng = np.random.default_rng(3)
    M, N, K = 37, 45, 300
    a_wide = rand(rng, M, K + 13)
    a = a_wide[:, 5:5 + K]
    b = rand(rng, K, N)
    res_wide = rand(rng, M, N + 3)
    res = res_wide[:, :N]
    out_wide = np.full((M, N + 9), 7.0, dtype=np.float32)
    out = out_wide[:, 2:2 + N]
    ret = _core.sgemm_packed(a, _core.PackedB(b, False, isa), residual=res, activation="tanh", out=out)
    assert ret is out
    assert_close(out, reference(a, b, False, None, res, "tanh"), K)
    assert (out_wide[:, :2] == 7).all() and (out_wide[:, 2 + N:] == 7).all()
    # residual aliasing the output (in-place residual add), with several K blocks.
    c = rand(rng, M, N)
    want = reference(a, b, False, None, c)
    _core.sgemm_packed(a, _core.PackedB(b, False, isa), residual=c, out=c)
    assert_close(c, want, K)


@pytest.mark.parametrize("isa", VARIANTS)
def test_threads_give_identical_results(isa):
    rng = np.random.default_rng(4)
    for M, N, K in [(300, 200, 700), (1, 1000, 64), (97, 33, 1)]:
        a = rand(rng, M, K)
        b = rand(rng, K, N)
        bias = rand(rng, N)
        pb = _core.PackedB(b, False, isa)
        one = _core.sgemm_packed(a, pb, bias=bias, activation="silu", num_threads=1)
        two = _core.sgemm_packed(a, pb, bias=bias, activation="silu", num_threads=2)
        np.testing.assert_array_equal(one, two)
        assert_close(one, reference(a, b, False, bias, None, "silu"), K)


@pytest.mark.parametrize("isa", VARIANTS)
def test_packed_b_properties(isa):
    _, nr = _core.gemm_tile(isa)
    b = np.ones((10, nr + 1), dtype=np.float32)
    pb = _core.PackedB(b, False, isa)
    assert (pb.K, pb.N, pb.isa) == (10, nr + 1, isa)
    assert pb.bytes == 2 * nr * 10 * 4
    pbt = _core.PackedB(b, True, isa)
    assert (pbt.K, pbt.N) == (nr + 1, 10)


def test_bad_inputs():
    isa = _core.best_isa()
    a = np.ones((3, 4), dtype=np.float32)
    b = np.ones((4, 5), dtype=np.float32)
    pb = _core.PackedB(b, False, isa)
    with pytest.raises(ValueError, match="float32"):
        _core.sgemm_packed(a.astype(np.float64), pb)
    with pytest.raises(ValueError, match="float32"):
        _core.PackedB(b.astype(np.float64), False, isa)
    with pytest.raises(ValueError, match="K=5"):
        _core.sgemm_packed(np.ones((3, 5), dtype=np.float32), pb)
    with pytest.raises(ValueError, match="K="):
        _core.sgemm(a, np.ones((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        _core.sgemm_packed(np.ones(4, dtype=np.float32), pb)
    with pytest.raises(ValueError, match="unknown activation 'gelu9'"):
        _core.sgemm_packed(a, pb, activation="gelu9")
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        _core.PackedB(b, False, "sse9")
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.sgemm(a, b, isa="sse9")
    with pytest.raises(ValueError, match="bias"):
        _core.sgemm_packed(a, pb, bias=np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="residual"):
        _core.sgemm_packed(a, pb, residual=np.ones((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        _core.sgemm_packed(np.ones((4, 3), dtype=np.float32).T, pb)
    with pytest.raises(ValueError, match="num_threads"):
        _core.sgemm_packed(a, pb, num_threads=0)
    with pytest.raises(ValueError, match="out"):
        _core.sgemm_packed(a, pb, out=np.ones((3, 4), dtype=np.float32))


@pytest.mark.skipif(BEST == len(ISA_ORDER) - 1, reason="the CPU supports every variant")
def test_unsupported_isa_is_an_error():
    with pytest.raises(ValueError, match="not supported"):
        _core.PackedB(np.ones((2, 2), dtype=np.float32), False, ISA_ORDER[BEST + 1])


# ---- batched MatMul of two activations (MatMulOp: attention's QK^T and PV) ----------------

def matmul_op(isa, a, b, trans_b=False, threads=1):
    from .plan_op import run_op

    rank = max(a.ndim, b.ndim)
    a_shape = [1] * (rank - a.ndim) + list(a.shape)
    b_shape = [1] * (rank - b.ndim) + list(b.shape)
    out = np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2])) + (a.shape[-2], b.shape[-2 if trans_b else -1])
    op = _core.MatMulOp(a_shape, b_shape, trans_b, isa)
    assert op.kernel_name == f"sgemm_batched_{isa}"
    return run_op(op, [a, b], [(out, np.float32)], threads)[0]


@pytest.mark.parametrize("isa", VARIANTS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.integers(1, 4), max_size=2), data=st.data(), M=st.integers(1, 40), N=st.integers(1, 40),
       K=st.integers(1, 300), trans_b=st.booleans(), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**31 - 1))
def test_batched_matmul_broadcast(isa, batch, data, M, N, K, trans_b, threads, seed):
    rng = np.random.default_rng(seed)
    # Each operand keeps or broadcasts (1) every batch dim, or drops leading ones.
    a_batch = [d if data.draw(st.booleans()) else 1 for d in batch]
    b_batch = [d if data.draw(st.booleans()) else 1 for d in batch][data.draw(st.integers(0, len(batch))):]
    a = rand(rng, *a_batch, M, K)
    b = rand(rng, *b_batch, N, K) if trans_b else rand(rng, *b_batch, K, N)
    want = a.astype(np.float64) @ (np.swapaxes(b, -1, -2) if trans_b else b).astype(np.float64)
    got = matmul_op(isa, a, b, trans_b, threads)
    assert got.shape == want.shape
    assert_close(got, want, K)


@pytest.mark.parametrize("isa", VARIANTS)
def test_batched_matmul_attention_shapes(isa):
    """QK^T and PV of 12 heads x 128 tokens, with enough products to run one per thread."""
    rng = np.random.default_rng(4)
    q, k, v = (rand(rng, 2, 12, 128, 32) for _ in range(3))
    scores = matmul_op(isa, q, np.swapaxes(k, -1, -2).copy(), threads=2)
    assert_close(scores, q.astype(np.float64) @ np.swapaxes(k, -1, -2), 32)
    assert_close(matmul_op(isa, q, k, trans_b=True, threads=2), q.astype(np.float64) @ np.swapaxes(k, -1, -2), 32)
    p = rand(rng, 2, 12, 128, 128)
    assert_close(matmul_op(isa, p, v, threads=2), p.astype(np.float64) @ v, 128)


def test_batched_matmul_bad_shapes():
    with pytest.raises(ValueError, match="inner dims differ"):
        _core.MatMulOp([2, 3, 4], [2, 5, 6], False, "portable")
    with pytest.raises(ValueError, match="batch dims do not broadcast"):
        _core.MatMulOp([2, 3, 4], [3, 4, 6], False, "portable")
