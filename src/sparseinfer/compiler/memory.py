"""Memory planning: intermediate tensors share one arena; two tensors may overlap in memory
only if their lifetimes (first write .. last read, in op order) do not intersect."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

ALIGN_FLOATS = 16  # 64-byte alignment for every tensor


@dataclass(frozen=True)
class Interval:
    name: str
    size: int   # floats
    start: int  # index of the op that writes it
    end: int    # index of the last op that reads it
    pool: Hashable = None  # see plan_arena


def _greedy(intervals: list[Interval]) -> tuple[dict[str, int], int]:
    """Greedy by size, largest first, each placed at the lowest offset free during its
    lifetime (the usual heuristic of TFLite/ORT planners; near-optimal for chain-like CNN
    graphs)."""
    placed: list[tuple[int, int, Interval]] = []  # (offset, size, interval)
    offsets: dict[str, int] = {}
    total = 0
    for iv in sorted(intervals, key=lambda i: (-i.size, i.start, i.name)):
        size = (iv.size + ALIGN_FLOATS - 1) // ALIGN_FLOATS * ALIGN_FLOATS
        busy = sorted((o, s) for o, s, other in placed if not (other.end < iv.start or iv.end < other.start))
        offset = 0
        for o, s in busy:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, iv))
        offsets[iv.name] = offset
        total = max(total, offset + size)
    return offsets, total


def plan_arena(intervals: list[Interval]) -> tuple[dict[str, int], int]:
    """Offsets (in floats) for each interval and the arena size.

    Intervals of one pool share memory among themselves only: each pool is planned on its own,
    then the pools are placed in the arena as intervals spanning their members' lifetimes (so
    pools live at different times still share memory). Pools keep a memory line written by the
    same kind of tensor, hence (under a static split of the work) by the same thread; intervals
    without a pool (None) are one pool."""
    pools: dict[Hashable, list[Interval]] = {}
    for iv in intervals:
        pools.setdefault(iv.pool, []).append(iv)
    inner: dict[Hashable, dict[str, int]] = {}
    spans: list[Interval] = []
    for k, (key, members) in enumerate(pools.items()):
        inner[key], size = _greedy(members)
        spans.append(Interval(str(k), size, min(m.start for m in members), max(m.end for m in members), key))
    placed, total = _greedy(spans)
    offsets = {iv.name: placed[str(k)] + inner[key][iv.name]
               for k, (key, members) in enumerate(pools.items()) for iv in members}
    return offsets, total
