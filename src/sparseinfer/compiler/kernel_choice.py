"""Kernel choice between dense and sparse candidates, by measurement on this machine.

Whether sparse weights pay depends on the layer's shape, the batch, the sparsity and the CPU,
so a fixed threshold is wrong somewhere: as LIBXSMM does, the compiler builds both candidates
and times them on the real shapes (random data, the engine's thread count), including the
layout reorder each one would need for its input, and keeps the faster. Layers too dense for
the sparse kernels to have any chance (below :data:`MIN_SPARSITY`) are not timed.

``SPARSEINFER_KERNELS=dense|sparse|auto`` (default auto) forces the choice, for tests and for
users who want to compare.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sparseinfer import _core

MIN_SPARSITY = 0.3
ENV_VAR = "SPARSEINFER_KERNELS"
_MODES = ("auto", "dense", "sparse")


def mode() -> str:
    """The kernel-choice mode from ``SPARSEINFER_KERNELS`` (auto when unset)."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in _MODES:
        raise ValueError(f"{ENV_VAR}={value!r}: expected one of {', '.join(_MODES)}")
    return value


def weight_sparsity(w: np.ndarray) -> float:
    """Fraction of exact zeros in a weight tensor."""
    return 1.0 - np.count_nonzero(w) / w.size if w.size else 0.0


@dataclass(frozen=True)
class Candidate:
    """One way to run a node: its op, the floats of each input it reads (in the layout it
    reads them), its workspace, and the reorders its input would need first."""

    name: str
    op: object
    input_sizes: Sequence[int]
    output_size: int
    workspace: int = 0
    reorders: Sequence[object] = ()
    reorder_sizes: Sequence[tuple[int, int]] = ()


def time_op(op: object, input_sizes: Sequence[int], output_size: int, workspace: int, num_threads: int,
            repeats: int = 3, min_seconds: float = 0.01) -> float:
    """Median seconds of one run of ``op`` alone on random inputs (outputs and workspace in an
    arena, so no allocation is timed)."""
    plan = _core.Plan(num_threads)
    ins = [plan.add_input_slot([int(n)]) for n in input_sizes]
    ws_offset = -(-int(output_size) // 16) * 16
    outs = [plan.add_arena_slot(0, int(output_size))]
    if workspace:
        outs.append(plan.add_arena_slot(ws_offset, int(workspace)))
    plan.add_output_slot([1])  # run() wants an output; the op writes the arena
    plan.set_arena_size(ws_offset + int(workspace))
    plan.add_op(op, ins, outs)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(int(n), dtype=np.float32) for n in input_sizes]
    keep = plan.run(arrays)  # binds the slots; run_single reuses them
    times: list[float] = []
    end = time.perf_counter() + min_seconds
    while len(times) < repeats or (time.perf_counter() < end and len(times) < 20):
        t0 = time.perf_counter()
        plan.run_single(0)
        times.append(time.perf_counter() - t0)
    del keep, arrays
    return float(np.median(times))


def choose(candidates: Sequence[Candidate], num_threads: int) -> tuple[Candidate, dict]:
    """The fastest candidate (reorders included) and a report of every candidate's measured
    milliseconds."""
    costs: dict[str, float] = {}
    for cand in candidates:
        t = time_op(cand.op, cand.input_sizes, cand.output_size, cand.workspace, num_threads)
        for reorder, (n_in, n_out) in zip(cand.reorders, cand.reorder_sizes):
            t += time_op(reorder, [n_in], n_out, 0, num_threads)
        costs[cand.name] = t * 1e3
    best = min(candidates, key=lambda c: costs[c.name])
    return best, {"measured_ms": {k: round(v, 4) for k, v in costs.items()}, "chosen": best.name}


def decide(report: dict, w: np.ndarray, candidates: Callable[[], Sequence[Candidate]], num_threads: int,
           unfit: str | None = None) -> bool:
    """Whether a layer with weights ``w`` runs its sparse candidate: forced by
    ``SPARSEINFER_KERNELS``, dense in auto mode below :data:`MIN_SPARSITY`, otherwise the faster
    of ``candidates()`` (a "dense" and a "sparse" one, built only when they are timed).
    ``unfit`` (why the sparse kernel cannot take this layer, when it cannot) means dense
    in every mode, with that reason in ``report["reason"]``. Fills ``report`` with the sparsity,
    the mode, the measured ms and the choice."""
    sparsity = weight_sparsity(w)
    forced = mode()
    report.update({"weight_sparsity": round(float(sparsity), 4), "mode": forced})
    if unfit:
        report["reason"] = unfit
    if unfit or forced == "dense" or (forced == "auto" and sparsity < MIN_SPARSITY):
        report["chosen"] = "dense"
        return False
    if forced == "sparse":
        report["chosen"] = "sparse"
        return True
    _, measured = choose(candidates(), num_threads)
    report.update(measured)
    return measured["chosen"] == "sparse"
