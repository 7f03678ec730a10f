"""Kernel choice between dense and sparse candidates, by measurement on this machine.

Whether sparse weights pay depends on the layer's shape, the batch, the sparsity and the CPU,
so a fixed threshold is wrong somewhere: as LIBXSMM does, the compiler builds both candidates
and times them on the real shapes (random data, the engine's thread count), including the
layout reorder each one would need for its input, and keeps the faster. Layers too dense for
the sparse kernels to have any chance (below :data:`MIN_SPARSITY`) are not timed.

Each candidate's time is its measured run plus its weights read from memory at the bandwidth
measured once per process: timed alone the op finds its weights in cache, in a model the layers
before it have evicted them (the candidates differ most in this: packed dense weights, 5-6 bytes
per nonzero compressed, ~15-18 as generated code).

Sparse convolutions and linear layers (over at least 256 tokens) have two kernels: the row
kernel over the compressed weights ("sparse") and, on AVX-512, code generated for the layer's
weights ("generated", register-blocked over output rows: faster where its code is reused from
cache, slower where a small map has each image fetch it from memory). The code adds memory, so
after the model is lowered :func:`fit_weight_budget` keeps it only while the compiled weights of
those layers stay within ``SPARSEINFER_WEIGHT_BUDGET`` (default 0.25) of their dense weights'
bytes (embedding tables are outside the budget), dropping it first where it saves the least
time per byte.

``SPARSEINFER_KERNELS=dense|sparse|generated|auto`` (default auto) forces the choice, for tests
and for users who want to compare ("generated" where a layer offers it, else "sparse").
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
_MODES = ("auto", "dense", "sparse", "generated")
SPARSE_KERNELS = ("sparse", "generated")


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
    weight_bytes: int = 0  # read from memory per run, in a model (see the module docstring)


def weights_read(name: str, op: object) -> int:
    """What candidate ``name`` reads of its weights per run: the generated code, not the
    compressed form it was made from; the op's weights otherwise."""
    return int(op.generated_bytes if name == "generated" else op.weight_bytes)


_BANDWIDTH: list[float] = []


def memory_bandwidth() -> float:
    """Bytes per second one thread reads from beyond its L2 (where a layer's weights are, once
    the layers before it have run), measured once per process: the sum of an 8 MB array (on Zen
    4 as fast as of 64 MB)."""
    if not _BANDWIDTH:
        a = np.ones(2 << 20, dtype=np.float32)
        a.sum()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            a.sum()
            best = min(best, time.perf_counter() - t0)
        _BANDWIDTH.append(a.nbytes / best)
    return _BANDWIDTH[0]


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


# Each candidate is timed this many times, the candidates in alternating order, keeping its
# fastest: a slow spell of the machine while one candidate is timed would otherwise decide the
# choice (and, through the weight budget, which layers keep their code: on 2 Zen 4 vCPUs single
# timings of one resnet50-pruned90 layer's row kernel read 0.69 and 1.52 ms in two compiles).
TIMING_PASSES = 2


def choose(candidates: Sequence[Candidate], num_threads: int) -> tuple[Candidate, dict]:
    """The fastest candidate (reorders included) and a report of every candidate's measured
    milliseconds (the fastest of ``TIMING_PASSES`` timings, alternating between candidates)."""
    candidates = list(candidates)
    measured: dict[str, float] = {}
    weights: dict[str, float] = {}
    for k in range(TIMING_PASSES):
        for cand in candidates if k % 2 == 0 else reversed(candidates):
            t = time_op(cand.op, cand.input_sizes, cand.output_size, cand.workspace, num_threads)
            for reorder, (n_in, n_out) in zip(cand.reorders, cand.reorder_sizes):
                t += time_op(reorder, [n_in], n_out, 0, num_threads)
            measured[cand.name] = min(measured.get(cand.name, float("inf")), t * 1e3)
            weights[cand.name] = cand.weight_bytes / memory_bandwidth() * 1e3
    best = min(candidates, key=lambda c: measured[c.name] + weights[c.name])
    report = {"measured_ms": {k: round(v, 4) for k, v in measured.items()}, "chosen": best.name}
    if any(c.weight_bytes for c in candidates):
        report["weights_ms"] = {k: round(v, 4) for k, v in weights.items()}
    return best, report


def is_sparse(choice: dict | None) -> bool:
    """Whether a layer's recorded choice runs one of the sparse kernels."""
    return bool(choice) and choice.get("chosen") in SPARSE_KERNELS


def decide(report: dict, w: np.ndarray, candidates: Callable[[], Sequence[Candidate]], num_threads: int,
           unfit: str | None = None, generated: bool = False, sparse_next: bool = False) -> str:
    """Which kernel a layer with weights ``w`` runs: "dense", "sparse" or (when the layer offers
    it: ``generated``) "generated". Forced by ``SPARSEINFER_KERNELS``, dense in auto mode below
    :data:`MIN_SPARSITY` (unless ``sparse_next``: the layer's readers run sparse, so the sparse
    kernels' output layout may pay even on dense weights), otherwise the fastest of
    ``candidates()`` (named like the kernels, built only when they are timed). ``unfit`` (why the
    sparse kernels cannot take this layer, when they cannot) means dense in every mode, with that
    reason in ``report["reason"]``. Fills ``report`` with the sparsity, the mode, the measured ms
    and the choice."""
    sparsity = weight_sparsity(w)
    forced = mode()
    report.update({"weight_sparsity": round(float(sparsity), 4), "mode": forced})
    if unfit:
        report["reason"] = unfit
    if sparse_next:
        report["readers"] = "sparse (a dense kernel's output is reordered for them: timed in its cost)"
    if unfit or forced == "dense" or (forced == "auto" and sparsity < MIN_SPARSITY and not sparse_next):
        report["chosen"] = "dense"
    elif forced in SPARSE_KERNELS:
        report["chosen"] = "generated" if forced == "generated" and generated else "sparse"
    else:
        _, measured = choose(candidates(), num_threads)
        report.update(measured)
    return report["chosen"]


BUDGET_VAR = "SPARSEINFER_WEIGHT_BUDGET"
DEFAULT_WEIGHT_BUDGET = 0.25


def weight_budget() -> float:
    """The share of the dense weights' bytes generated code may fill the compiled weights up to
    (``SPARSEINFER_WEIGHT_BUDGET``, default 0.25)."""
    raw = os.environ.get(BUDGET_VAR, "").strip()
    if not raw:
        return DEFAULT_WEIGHT_BUDGET
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{BUDGET_VAR}={raw!r}: expected a number >= 0 (a share of the dense weights' bytes)")
    return value


def cost_ms(choice: dict, name: str) -> float:
    """A candidate's cost as the choice weighed it (measured plus weights read)."""
    return choice["measured_ms"][name] + choice.get("weights_ms", {}).get(name, 0.0)


# The layers whose kernel is chosen here (by the ONNX op or the fusion pass's), weights at input 1.
CHOOSING_OPS = ("Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm")


def dense_weight_bytes(graph) -> int:
    """Bytes of the float weights of a graph's convolutions and linear layers stored dense: the
    weight budget's base (it covers what those layers compile to; a transformer's embedding
    tables, looked up rather than multiplied, are outside it)."""
    names = {n.inputs[1] for n in graph.nodes if n.op in CHOOSING_OPS and len(n.inputs) > 1}
    return 4 * sum(int(graph.constants[k].size) for k in names
                   if k in graph.constants and graph.constants[k].dtype == np.float32 and graph.constants[k].ndim >= 2)


def fit_weight_budget(generated: Sequence[tuple[object, dict]], total_bytes: int, limit: float,
                      images: Sequence[int] | None = None) -> int:
    """Keeps generated code on the layers in ``generated`` ((sparse op, its measured choice)
    pairs) only while the compiled weights fit ``limit`` bytes (``weight_budget()`` x the dense
    weights' bytes, less what other parts of the engine hold), counting that a layer keeping its
    code frees the compressed nonzeros it was made from (``op.releasable_bytes``). Drops it
    (``op.drop_generated()``; the choice then says "sparse" and why) first where it saves the least
    time per image and byte it adds (``images``: per layer, the images one measured run computes;
    1 each when None); then releases the compressed nonzeros of the layers that keep it.
    ``total_bytes``: the compiled weights now. Returns them after. (Layers forced to generated
    code by ``SPARSEINFER_KERNELS`` are not passed here: they keep it.)"""
    per_run = list(images) if images is not None else [1] * len(generated)

    def saving_per_byte(k):
        op, choice = generated[k]
        added = max(1, op.generated_bytes - op.releasable_bytes)
        return (cost_ms(choice, "sparse") - cost_ms(choice, "generated")) / per_run[k] / added

    kept = [generated[k] for k in sorted(range(len(generated)), key=saving_per_byte)]
    after = total_bytes - sum(op.releasable_bytes for op, _ in kept)
    while kept and after > limit:
        op, choice = kept.pop(0)
        after += op.releasable_bytes - op.generated_bytes
        op.drop_generated()
        choice["chosen"] = "sparse"
        choice["reason"] = (f"generated code dropped: the compiled weights would exceed {BUDGET_VAR}="
                            f"{weight_budget():g} of the dense weights' bytes")
    for op, _ in kept:
        op.release_compressed()
    return after
