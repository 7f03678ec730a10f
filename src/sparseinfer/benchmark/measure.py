"""Measuring engines: the one timing loop, latency distribution, throughput, CPU utilisation
and peak memory.

Two scenarios (as in the published CPU-inference studies):

* ``sync``: one request at a time; items/s = batch / mean latency. Several engines alternate
  in rounds (:func:`measure_sync`), each timing slices of back-to-back requests.
* ``async``: ``num_streams`` threads each submit requests back to back to their own runner
  (cores split between them); items/s = items completed in the timed window / its length.

CPU utilisation is the measured process's user + system CPU time over the timed window divided
by the window's wall time, in % of one core (so at most 100 x cores). Peak memory is that
process's peak resident set (:func:`peak_rss_mib`).

This module imports only the standard library and NumPy: the engine worker
(:mod:`sparseinfer.benchmark.worker`) also loads it inside other Python environments
(DeepSparse's), where sparseinfer itself cannot be imported."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

RunFn = Callable[[dict], list]
"""An engine built for one (model, batch, cores): inputs by name -> list of outputs."""


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads), in seconds."""
    t = os.times()
    return t.user + t.system


def peak_rss_mib() -> float:
    """Peak resident set of this process, MiB: VmHWM on Linux. Not ru_maxrss, which Linux
    carries over fork and exec, so a worker would report at least its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


@dataclass
class Slice:
    """One timed slice of back-to-back requests: per-request latencies (s), the slice's wall
    and CPU seconds, and the peak resident set of the process that ran it."""

    latencies_s: list[float]
    wall_s: float
    cpu_s: float
    peak_rss_mib: float

    def as_dict(self) -> dict:
        return asdict(self)


def time_slice(run: RunFn, feeds: dict, seconds: float, min_iters: int = 1) -> Slice:
    """The timing loop: runs ``run(feeds)`` back to back for ``seconds`` (and at least
    ``min_iters`` times), timing each request."""
    lat: list[float] = []
    c0 = cpu_seconds()
    w0 = time.perf_counter()
    end = w0 + seconds
    while len(lat) < min_iters or time.perf_counter() < end:
        t0 = time.perf_counter()
        run(feeds)
        lat.append(time.perf_counter() - t0)
    return Slice(lat, time.perf_counter() - w0, cpu_seconds() - c0, peak_rss_mib())


class Timed(Protocol):
    """An engine that can be timed: in this process (:class:`LocalEngine`) or in its own
    (:class:`sparseinfer.benchmark.worker.Worker`)."""

    def time_slice(self, seconds: float, min_iters: int = 1) -> Slice: ...


@dataclass
class BenchmarkResult:
    """What one engine achieved in one scenario. Times in milliseconds."""

    engine: str
    scenario: str
    batch_size: int
    num_streams: int
    num_cores: int
    iterations: int
    items: int
    wall_s: float
    mean_ms: float
    median_ms: float
    std_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    items_per_s: float
    cpu_percent: float
    peak_rss_mib: float
    round_medians_ms: list[float] = field(default_factory=list)
    # Per round, the machine's cross-core round trip just before this engine's slice
    # (cross_core_round_trip_ns; empty on one core): on a VM whose host sometimes places the
    # vCPUs far apart (~5x the usual), rounds taken in such periods can be told apart.
    round_cross_core_ns: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(engine: str, scenario: str, batch_size: int, num_streams: int, num_cores: int,
              latencies_s: Sequence[float], wall_s: float, cpu_s: float, peak_mib: float | None = None,
              round_medians_ms: Sequence[float] = (), round_cross_core_ns: Sequence[float] = ()) -> BenchmarkResult:
    """Builds the result from raw per-request latencies (seconds), the timed window's wall time
    and the CPU seconds spent in it."""
    if len(latencies_s) == 0:
        raise RuntimeError(f"{engine}: no request completed in the timed window ({wall_s:.3f} s)")
    a = np.asarray(latencies_s, dtype=np.float64) * 1e3
    n = len(a)
    items = n * batch_size
    if scenario == "sync":
        ips = batch_size / (a.mean() / 1e3)
    else:
        ips = items / wall_s
    return BenchmarkResult(engine, scenario, batch_size, num_streams, num_cores, n, items, float(wall_s),
                           float(a.mean()), float(np.median(a)), float(a.std()), float(np.percentile(a, 90)),
                           float(np.percentile(a, 99)), float(a.min()), float(a.max()), float(ips),
                           float(100.0 * cpu_s / wall_s) if wall_s > 0 else 0.0,
                           float(peak_mib if peak_mib is not None else peak_rss_mib()),
                           [float(m) for m in round_medians_ms], [float(x) for x in round_cross_core_ns])


class Progress:
    """A tqdm bar on stderr counting seconds of measurement (a no-op when disabled or when tqdm
    is missing)."""

    def __init__(self, total_s: float, desc: str, enabled: bool = True):
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # pragma: no cover - tqdm is in the benchmark extra
                return
            self._bar = tqdm(total=round(total_s, 2), desc=desc, unit="s", file=sys.stderr, leave=False,
                             mininterval=0.25, bar_format="{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s")

    def advance(self, seconds: float) -> None:
        if self._bar is not None and seconds > 0:
            self._bar.update(round(seconds, 3))

    def set_description(self, desc: str) -> None:
        if self._bar is not None:
            self._bar.set_description(desc)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class LocalEngine:
    """An engine in this process: ``streams`` runners of ``engine`` on the same inputs (one
    for sync; several, the cores split between them, for async). Calling it runs one request
    on other inputs (accuracy)."""

    def __init__(self, engine: str, model, feeds: dict, batch_size: int, num_cores: int, streams: int = 1,
                 source: str | None = None):
        from sparseinfer.benchmark.runners import make_runner

        self.engine, self.feeds, self.batch_size, self.num_cores = engine, feeds, batch_size, num_cores
        cores = [num_cores] if streams == 1 else split_cores(num_cores, streams)
        shapes = {k: np.shape(v) for k, v in feeds.items()}  # e.g. a text model's sequence length
        self.runners = [make_runner(engine, model, batch_size, c, source, shapes) for c in cores]

    def __call__(self, feeds: dict) -> list:
        return self.runners[0](feeds)

    def outputs(self) -> list:
        """The outputs on the shared inputs."""
        return [np.asarray(o) for o in self.runners[0](self.feeds)]

    def time_slice(self, seconds: float, min_iters: int = 1) -> Slice:
        return time_slice(self.runners[0], self.feeds, seconds, min_iters)

    def run_async(self, warmup_s: float, time_s: float, progress: Progress | None = None) -> BenchmarkResult:
        return measure_async(self.engine, self.runners, self.feeds, self.batch_size, self.num_cores, warmup_s,
                             time_s, progress)

    def close(self) -> None:
        self.runners = []


def measure_sync(engines: Mapping[str, Timed], batch_size: int, num_cores: int, warmup_s: float = 1.0,
                 time_s: float = 10.0, rounds: int = 5, min_iters_per_round: int = 3,
                 progress: Progress | None = None) -> dict[str, BenchmarkResult]:
    """Sync scenario for one or more engines: warm-up each, then ``rounds`` rounds in which
    every engine runs for its slice (``time_s`` split over rounds and engines), the order
    reversing every round so drift hits all alike. CPU % counts only each engine's own slices,
    in the process that ran them; the round medians show drift."""
    names = list(engines)
    rounds = max(rounds, 1)
    for name in names:
        if progress:
            progress.set_description(f"warm-up {name}")
        engines[name].time_slice(warmup_s, 1)
        if progress:
            progress.advance(warmup_s)
    lat: dict[str, list[float]] = {n: [] for n in names}
    med: dict[str, list[float]] = {n: [] for n in names}
    xcore: dict[str, list[float]] = {n: [] for n in names}
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    peak = dict.fromkeys(names, 0.0)
    slice_s = time_s / rounds / max(len(names), 1)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else list(reversed(names))):
            if progress:
                progress.set_description(f"round {r + 1}/{rounds} {name}")
            if num_cores > 1:
                xcore[name].append(cross_core_round_trip_ns())
            s = engines[name].time_slice(slice_s, min_iters_per_round)
            if progress:
                progress.advance(slice_s)
            lat[name] += s.latencies_s
            med[name].append(float(np.median(s.latencies_s)) * 1e3)
            wall[name] += s.wall_s
            cpu[name] += s.cpu_s
            peak[name] = max(peak[name], s.peak_rss_mib)
    return {n: summarize(n, "sync", batch_size, 1, num_cores, lat[n], wall[n], cpu[n], peak[n], med[n], xcore[n])
            for n in names}


def cross_core_round_trip_ns() -> float:
    """The machine's cross-core cache-line round trip now (ns; see BenchmarkResult), rounded."""
    from sparseinfer import _core

    return round(float(_core.cross_core_round_trip_ns()), 1)


def measure_async(engine: str, runners: Sequence[RunFn], feeds: dict, batch_size: int, num_cores: int,
                  warmup_s: float = 1.0, time_s: float = 10.0, progress: Progress | None = None) -> BenchmarkResult:
    """Async scenario: one thread per runner (stream), all submitting back to back for ``time_s``
    after a joint warm-up; requests still running at the end are awaited but not counted."""
    n = len(runners)
    if n < 1:
        raise ValueError("async scenario needs at least one stream")
    lat: list[list[float]] = [[] for _ in range(n)]
    errors: list[BaseException] = []
    phase = {"record": False, "stop": False}
    barrier = threading.Barrier(n + 1)

    def stream(k: int) -> None:
        run = runners[k]
        try:
            run(feeds)
            barrier.wait()
            while not phase["stop"]:
                t0 = time.perf_counter()
                run(feeds)
                t1 = time.perf_counter()
                if phase["record"] and not phase["stop"]:
                    lat[k].append(t1 - t0)
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            barrier.abort()
            phase["stop"] = True

    threads = [threading.Thread(target=stream, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    if not errors:
        if progress:
            progress.set_description(f"warm-up {engine} ({n} streams)")
        _sleep_with_progress(warmup_s, progress)
        if progress:
            progress.set_description(f"{engine} async {n} streams")
        c0, w0 = cpu_seconds(), time.perf_counter()
        phase["record"] = True
        _sleep_with_progress(time_s, progress)
        phase["stop"] = True
        wall = time.perf_counter() - w0
        cpu = cpu_seconds() - c0
    phase["stop"] = True
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return summarize(engine, "async", batch_size, n, num_cores, [x for s in lat for x in s], wall, cpu)


def _sleep_with_progress(seconds: float, progress: Progress | None) -> None:
    end = time.perf_counter() + seconds
    while True:
        left = end - time.perf_counter()
        if left <= 0:
            return
        step = min(0.2, left)
        time.sleep(step)
        if progress:
            progress.advance(step)


def split_cores(num_cores: int, parts: int) -> list[int]:
    """Cores per stream/instance: ``num_cores`` split as evenly as possible, at least 1 each."""
    if parts < 1:
        raise ValueError(f"number of streams/instances must be >= 1, got {parts}")
    base, extra = divmod(num_cores, parts)
    return [max(1, base + (1 if k < extra else 0)) for k in range(parts)]
