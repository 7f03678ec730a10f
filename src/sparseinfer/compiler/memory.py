"""Memory planning: intermediate tensors share one arena; two tensors may overlap in memory
only if their lifetimes (first write .. last read, in op order) do not intersect."""

from __future__ import annotations

from dataclasses import dataclass

ALIGN_FLOATS = 16  # 64-byte alignment for every tensor


@dataclass(frozen=True)
class Interval:
    name: str
    size: int   # floats
    start: int  # index of the op that writes it
    end: int    # index of the last op that reads it


def plan_arena(intervals: list[Interval]) -> tuple[dict[str, int], int]:
    """Offsets (in floats) for each interval and the arena size. Greedy by size, largest
    first, each placed at the lowest offset free during its lifetime (the usual heuristic
    of TFLite/ORT planners; near-optimal for chain-like CNN graphs)."""
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
