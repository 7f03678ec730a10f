"""NumPy references shared by the kernel-family tests: the fused activations, exactly as
csrc/kernels/epilogue.h defines them (float64 math)."""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ["none", "relu", "clip", "sigmoid", "hardsigmoid", "hardswish", "silu", "tanh"]
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
    raise AssertionError(f"unknown activation {act!r}")
