"""Timing engines against each other: warm-up, then rounds in which every engine runs for a
slice of time, the engine order alternating between rounds so machine drift hits all alike."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from sparseinfer.benchmark.runners import RunFn


@dataclass(frozen=True)
class LatencyStats:
    engine: str
    batch_size: int
    iterations: int
    mean_ms: float
    median_ms: float
    std_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    items_per_s: float          # batch / mean latency (sync, one request at a time)
    round_medians_ms: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def stats_from(engine: str, batch_size: int, lat_s: list[float], round_medians: list[float]) -> LatencyStats:
    a = np.asarray(lat_s) * 1e3
    return LatencyStats(engine, batch_size, len(a), float(a.mean()), float(np.median(a)), float(a.std()),
                        float(np.percentile(a, 90)), float(np.percentile(a, 99)), float(a.min()),
                        float(batch_size / (a.mean() / 1e3)), tuple(float(m) for m in round_medians))


def compare_engines(runners: Mapping[str, RunFn], feeds: dict, batch_size: int, warmup_s: float = 1.0,
                    time_s: float = 10.0, rounds: int = 5, min_iters_per_round: int = 3) -> dict[str, LatencyStats]:
    """Sync (one request at a time) latency of each engine on the same inputs."""
    names = list(runners)
    for name in names:  # warm-up: caches, thread pools, lazy allocations
        end = time.perf_counter() + warmup_s
        runners[name](feeds)
        while time.perf_counter() < end:
            runners[name](feeds)
    lat: dict[str, list[float]] = {n: [] for n in names}
    med: dict[str, list[float]] = {n: [] for n in names}
    slice_s = time_s / max(rounds, 1) / max(len(names), 1)
    for r in range(rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            run = runners[name]
            this: list[float] = []
            end = time.perf_counter() + slice_s
            while len(this) < min_iters_per_round or time.perf_counter() < end:
                t0 = time.perf_counter()
                run(feeds)
                this.append(time.perf_counter() - t0)
            lat[name] += this
            med[name].append(float(np.median(this)) * 1e3)
    return {n: stats_from(n, batch_size, lat[n], med[n]) for n in names}
