"""What the kernel benchmarks share: the machine description with its measured FMA peak, a
timer, and the alternating sampler (candidates take turns within every repeat, so noise from
other users of the machine hits all of them alike)."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable, Mapping

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))
from sparseinfer import _core  # noqa: E402


def machine() -> dict:
    """CPU, best ISA, physical cores and the single-thread fp32 FMA peak (GFLOP/s, best of short
    probes: clock-independent; None on the portable ISA)."""
    best = _core.best_isa()
    peak1 = max(_core._gemm_fma_peak(best, 0.03) for _ in range(8)) if best != "portable" else None
    return {"cpu": platform.processor() or platform.machine(), "best_isa": best,
            "cores": _core.physical_core_count(), "fma_peak_gflops_1thread": round(peak1, 1) if peak1 else None}


def time_call(fn: Callable[[], object], min_time: float) -> float:
    """Seconds per call: calls batched so that one sample lasts >= min_time / 5."""
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(min_time / 5 / one))
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def alternate(cands: Mapping[str, Callable[[], object]], repeats: int, min_time: float,
              sample: Callable[[Callable[[], object], float], float] = time_call) -> dict[str, list[float]]:
    """Three warm-up calls each, then `repeats` rounds in which every candidate takes one
    sample (seconds per call) in turn."""
    for fn in cands.values():
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(repeats):
        for k, fn in cands.items():
            samples[k].append(sample(fn, min_time))
    return samples
