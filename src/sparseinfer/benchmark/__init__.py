"""Benchmarking: the published CPU-inference methodology (same machine, same run, engines
alternating in rounds after warm-up, medians and ratios)."""

from sparseinfer.benchmark.inputs import make_inputs
from sparseinfer.benchmark.runners import RUNNERS, make_runner
from sparseinfer.benchmark.timing import LatencyStats, compare_engines

__all__ = ["make_inputs", "RUNNERS", "make_runner", "LatencyStats", "compare_engines"]
