"""NumPy references shared by the kernel-family tests: the fused activations, exactly as
csrc/kernels/epilogue.h defines them (float64 math)."""

from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = ["none", "relu", "clip", "sigmoid", "hardsigmoid", "hardswish", "silu", "tanh", "gelu", "gelu_tanh",
               "erf", "sqrt"]

_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """Exact erf in float64 (math.erf element-wise)."""
    return _erf(np.asarray(x, np.float64)).astype(np.float64)
ACT_PARAMS = {"clip": (-0.5, 0.7), "hardsigmoid": (0.2, 0.5)}  # (alpha, beta) the tests use


def act_ref(x: np.ndarray, act: str, alpha: float = 0.0, beta: float = 0.0) -> np.ndarray:
    if act == "none":
        return x
    if act == "relu":
        return np.maximum(x, 0)
    if act == "clip":
        return np.minimum(np.maximum(x, alpha), beta)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if act == "hardsigmoid":
        return np.clip(alpha * x + beta, 0, 1)
    if act == "hardswish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    if act == "silu":
        return x / (1 + np.exp(-x))
    if act == "tanh":
        return np.tanh(x)
    if act == "gelu":
        return 0.5 * x * (1 + erf(x / np.sqrt(2)))
    if act == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    if act == "erf":
        return erf(x)
    if act == "sqrt":
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)
    raise AssertionError(f"unknown activation {act!r}")
