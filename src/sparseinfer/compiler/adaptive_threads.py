"""One plan on all cores or on one, whichever has been faster lately.

A plan split over several cores pays for every layer's hand-off between them, and what that
costs is not fixed: on a shared VM the cross-core round trip of a cache line can rise from
~60-100 ns to ~330 ns for seconds to minutes (README, "The two states of this 2-vCPU VM").
Measured on 2 Zen 4 vCPUs at batch 1: resnet50-pruned90 12.0 ms on two threads against 18.3 on
one while the round trip was ~90 ns, but 19.7 ms on two in the slow state; resnet50-pruned95
8.8 ms on two against 13.2 on one, 16.8 on two in the slow state. No setting fixes it from the
start, so ``AdaptiveThreads`` keeps both: the compiled plan and a one-thread copy of it over the
same ops (``CompiledGraph.share``: the weights held once, an arena of its own), runs the one that
has measured faster, and times the other every ``PROBE_EVERY``-th run so that a change of state
is seen within a few dozen runs (its cost: at most the difference, on one run in PROBE_EVERY;
medians are unaffected).

Only for a single native plan on more than one thread whose activations are small enough to
hold twice (``MAX_ARENA_BYTES``): batch 1 and small batches. Batches run as streams
(micro_batch.py) are single-thread already."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import numpy as np

PROBE_EVERY = 32
# The one-thread copy's activations, held besides the plan's: at most this many bytes.
MAX_ARENA_BYTES = 64 << 20
# Weight of the newest run in a variant's running time (exponential moving average).
SMOOTHING = 0.5


def arena_bytes(compiled) -> int:
    """The activation memory of a CompiledGraph's native plans."""
    return sum(int(seg.plan.arena_bytes) for seg in compiled.segments if hasattr(seg, "plan"))


def worth_adapting(compiled) -> bool:
    """Whether ``compiled`` (a CompiledGraph) should get a one-thread twin: a single native
    plan on more than one thread, with activations small enough to hold twice."""
    return (compiled.num_threads > 1 and getattr(compiled, "_single", None) is not None
            and arena_bytes(compiled) <= MAX_ARENA_BYTES)


class AdaptiveThreads:
    """A CompiledGraph (``wide``, several threads) and its one-thread twin; ``run`` uses the one
    that has been faster lately. Everything else (report, profile, graph, ...) is ``wide``'s."""

    def __init__(self, wide, clock: Callable[[], float] = time.perf_counter):
        self.wide = wide
        self.narrow = wide.share(num_threads=1)
        self._plans = (wide, self.narrow)
        self._seconds: list[float | None] = [None, None]  # smoothed run time of each
        self._runs = 0
        self._best = 0
        self._clock = clock
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        # (only called for what this class does not define: the wide plan's attributes)
        return getattr(self.__dict__["wide"], name)

    @property
    def threads(self) -> int:
        """The threads the next ordinary run uses (after the first two runs: the faster so far)."""
        return self._plans[self._best].num_threads

    def _pick(self) -> int:
        with self._lock:
            self._runs += 1
            for k, s in enumerate(self._seconds):
                if s is None:
                    return k
            return 1 - self._best if self._runs % PROBE_EVERY == 0 else self._best

    def _record(self, k: int, seconds: float) -> None:
        with self._lock:
            s = self._seconds[k]
            self._seconds[k] = seconds if s is None else (1 - SMOOTHING) * s + SMOOTHING * seconds
            if None not in self._seconds:
                self._best = 0 if self._seconds[0] <= self._seconds[1] else 1

    def run(self, inputs: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        k = self._pick()
        t0 = self._clock()
        results = self._plans[k].run(inputs, out)
        self._record(k, self._clock() - t0)
        return results
