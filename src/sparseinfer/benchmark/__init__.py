"""Benchmarking: the published CPU-inference methodology (same machine, same run, engines
alternating in rounds after warm-up, medians and ratios)."""

from sparseinfer.benchmark.inputs import make_inputs
from sparseinfer.benchmark.measure import BenchmarkResult, LocalEngine, measure_async, measure_sync
from sparseinfer.benchmark.runners import RUNNERS, make_runner
from sparseinfer.benchmark.worker import Worker, open_engine

__all__ = ["make_inputs", "RUNNERS", "make_runner", "BenchmarkResult", "LocalEngine", "measure_sync",
           "measure_async", "Worker", "open_engine"]
