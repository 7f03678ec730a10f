"""The normalisation family (layer_norm) against a NumPy float64 reference, every variant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseinfer import _core

from .plan_op import run_op, supported

VARIANTS = [pytest.param(v, marks=pytest.mark.skipif(not supported(v), reason=f"CPU lacks {v}"))
            for v in _core.norm_variants()]


def reference(x, gamma, beta, eps):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    y = (x64 - mean) * rstd * gamma + (beta if beta is not None else 0)
    return y, mean[:, 0], rstd[:, 0]


def layer_norm(isa, x, gamma, beta, eps, stats=False, threads=1):
    rows, n = x.shape
    op = _core.LayerNormOp(rows, n, eps, beta is not None, stats, isa)
    ins = [x, gamma] + ([beta] if beta is not None else [])
    outs = [((rows, n), np.float32)] + ([((rows,), np.float32)] * 2 if stats else [])
    return run_op(op, ins, outs, threads)


@pytest.mark.parametrize("isa", VARIANTS)
@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 40), n=st.integers(1, 1100), with_beta=st.booleans(), stats=st.booleans(),
       offset=st.sampled_from([0.0, 30.0]), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**31 - 1))
def test_random_shapes(isa, rows, n, with_beta, stats, offset, threads, seed):
    rng = np.random.default_rng(seed)
    # A large common offset checks the two-pass variance (one-pass E[x^2] - E[x]^2 cancels).
    x = (rng.standard_normal((rows, n)) * 2 + offset).astype(np.float32)
    gamma = rng.standard_normal(n).astype(np.float32)
    beta = rng.standard_normal(n).astype(np.float32) if with_beta else None
    got = layer_norm(isa, x, gamma, beta, 1e-5, stats, threads)
    want, mean, rstd = reference(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4)
    if stats:
        np.testing.assert_allclose(got[1], mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[2], rstd, rtol=1e-4)


@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 32, 33, 384, 768])
def test_row_lengths_around_vector_widths(isa, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((5, n)).astype(np.float32)
    gamma, beta = rng.standard_normal((2, n)).astype(np.float32)
    want, _, _ = reference(x, gamma, beta, 1e-12)
    np.testing.assert_allclose(layer_norm(isa, x, gamma, beta, 1e-12)[0], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("isa", VARIANTS)
def test_constant_rows_and_epsilon(isa):
    """A constant row has zero variance: the output is beta (eps keeps it finite), and a large
    eps visibly shrinks the normalised values."""
    x = np.full((3, 40), 2.5, np.float32)
    gamma = np.ones(40, np.float32)
    beta = np.linspace(-1, 1, 40).astype(np.float32)
    np.testing.assert_allclose(layer_norm(isa, x, gamma, beta, 1e-5)[0], np.broadcast_to(beta, x.shape), atol=1e-6)
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    want, _, _ = reference(x, gamma[:1].repeat(64), None, 10.0)
    np.testing.assert_allclose(layer_norm(isa, x, np.ones(64, np.float32), None, 10.0)[0], want, rtol=1e-5, atol=1e-6)


def test_variant_list_and_bad_isa():
    assert _core.norm_variants()[0] == "portable"
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.LayerNormOp(1, 4, 1e-5, False, False, "sse9")
