"""Running a batch as single-image streams: one plan per core, images split between them.

A batch of N images can run as N runs of a batch-1 plan when no op mixes images. Then each
core runs its own single-threaded plan over its share of the images (no barriers between
cores inside a layer, each image's activations stay in that core's caches) instead of every
layer splitting one N-image problem over all cores. Measured on 2 Zen 4 cores (resnet50):
90%-pruned, one 2-thread plan per image 59 img/s, two 1-thread streams 68-73 img/s, while the
batched sparse layout (CNHW) gave 33 img/s at batch 64 and less per image at every batch from 2
to 64; dense, 24.6 img/s as streams against 23.0 batched at batch 64.

``batch_separable`` decides from the model whether that is exact; ``StreamedBatch`` runs it.
In auto mode (``SPARSEINFER_BATCHING=auto|streams|batched``, default auto) a separable batch of
at least one image per core runs as streams when the single-image plan chose sparse kernels.
A dense model whose weights are each reused many times per image (convolutions over a map:
``weight_reuse``) and that fits ``DENSE_TIMING_BUDGET`` has both forms timed at compile time and
keeps the faster (measured at batch 64: mobilenet_v2 255 against 200 img/s, resnet50 +4%);
models whose weights are used about once per image (MLPs, classifier heads) need the batch
to reuse them and stay one plan."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import onnx

from sparseinfer.graph.ir import Graph, Node

ENV_VAR = "SPARSEINFER_BATCHING"
_MODES = ("auto", "streams", "batched")

# Ops whose first input's axis 0 they act along when no `axis` attribute is given.
_DEFAULT_AXIS_0 = {"Gather", "GatherElements", "Split", "ArgMax", "ArgMin", "Hardmax", "Compress", "CumSum"}
# Ops that take their axes as the input at this position (opset >= 13/18 forms).
_AXES_INPUT = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1,
               "ReduceMin": 1, "ReduceProd": 1, "ReduceL1": 1, "ReduceL2": 1, "ReduceLogSum": 1,
               "ReduceLogSumExp": 1, "ReduceSumSquare": 1, "CumSum": 1}
_REDUCE = {op for op in _AXES_INPUT if op.startswith("Reduce")}


# Below this many multiply-adds per weight and image, batching is what reuses the weights.
MIN_WEIGHT_REUSE = 32
# Timing both forms holds both plans' packed weights for a moment: only for models this small.
DENSE_TIMING_BUDGET = 256 << 20


def weight_reuse(g: Graph) -> float:
    """Multiply-adds per constant weight element of the Conv/Gemm/MatMul nodes of ``g``."""
    macs = weights = 0
    for node in g.nodes:
        if node.op not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2 or node.inputs[1] not in g.constants:
            continue
        w = np.asarray(g.constants[node.inputs[1]])
        out = g.shapes.get(node.outputs[0])
        if out is None or w.ndim < 2:
            continue
        if node.op == "Conv":
            per_out = w.size // w.shape[0]
        elif node.op == "Gemm":
            per_out = w.shape[1] if node.attrs.get("transB", 0) else w.shape[0]
        else:
            per_out = w.shape[-2]
        macs += int(np.prod(out)) * per_out
        weights += w.size
    return macs / weights if weights else 0.0


def time_both(streamed: "StreamedBatch", batched, feeds: Sequence[np.ndarray], runs: int = 2) -> tuple[float, float]:
    """Best-of-``runs`` seconds of a batch as streams and as one plan, alternating, after one
    warm-up run of each."""
    streamed.run(feeds)
    batched.run(feeds)
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for k, g in enumerate((streamed, batched)):
            t0 = time.perf_counter()
            g.run(feeds)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[0], best[1]


def mode() -> str:
    """The batching mode from ``SPARSEINFER_BATCHING`` (auto when unset)."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in _MODES:
        raise ValueError(f"{ENV_VAR}={value!r}: expected one of {', '.join(_MODES)}")
    return value


def _is_batch(v: str, g1: Graph, gn: Graph, n: int) -> bool:
    s1, sn = g1.shapes.get(v), gn.shapes.get(v)
    return (s1 is not None and sn is not None and len(s1) >= 1 and len(s1) == len(sn)
            and s1[0] == 1 and sn[0] == n and tuple(s1[1:]) == tuple(sn[1:]))


def _axes_touch_0(node: Node, rank: int, g: Graph) -> bool:
    """Whether the node acts along axis 0 of its first input (by attribute, axes input or default)."""
    norm = lambda a: int(a) + rank if int(a) < 0 else int(a)  # noqa: E731
    if "perm" in node.attrs:
        return norm(node.attrs["perm"][0]) != 0
    if "axis" in node.attrs:
        return norm(node.attrs["axis"]) == 0
    if "axes" in node.attrs:
        return 0 in {norm(a) for a in node.attrs["axes"]}
    k = _AXES_INPUT.get(node.op)
    if k is not None:
        if len(node.inputs) > k and node.inputs[k]:
            if node.inputs[k] not in g.constants:
                return True  # axes known only at run time
            return 0 in {norm(a) for a in np.asarray(g.constants[node.inputs[k]]).ravel()}
        if node.op in _REDUCE:  # no axes: all of them, unless told to do nothing
            return not node.attrs.get("noop_with_empty_axes", 0)
        return node.op in ("Slice", "Squeeze")  # Slice: every axis; Squeeze: every size-1 axis
    if node.op == "Transpose":
        return True  # default perm reverses the axes
    if node.op == "Softmax" or node.op == "LogSoftmax":
        return g.opset >= 13 and rank == 1
    if node.op == "Flatten":
        return False  # default axis 1
    return node.op in _DEFAULT_AXIS_0


def batch_separable(g1: Graph, gn: Graph, n: int) -> str | None:
    """None when the model imported at batch 1 (``g1``) and at batch ``n`` (``gn``) computes
    every image independently (so batch ``n`` equals ``n`` batch-1 runs); else the reason.

    A value "carries the batch" when its shape is (1, ...) at batch 1 and (n, ...) at batch n.
    Every graph input and output must carry it; an op that reads a batch-carrying value must
    produce only batch-carrying values (Shape aside) and must not act along axis 0; ops with
    subgraphs (If, Loop, Scan) are not looked into and make the model not separable."""
    if n < 2:
        return "batch below 2"
    if [x.op for x in g1.nodes] != [x.op for x in gn.nodes]:
        return "the graphs imported at batch 1 and at batch n differ"
    for v in list(gn.inputs) + list(gn.outputs):
        if v not in gn.constants and not _is_batch(v, g1, gn, n):
            return f"value {v!r} has shapes {g1.shapes.get(v)} at batch 1 and {gn.shapes.get(v)} at batch {n}"
    for node in gn.nodes:
        proto = node.proto
        if proto is not None and any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                     for a in proto.attribute):
            return f"{node.op} node {node.name!r} has subgraphs"
        batch_in = [v for v in node.inputs if v and _is_batch(v, g1, gn, n)]
        if not batch_in:
            continue
        if node.op == "Shape":
            continue
        if node.op == "Size":
            return f"Size node {node.name!r} reads the batch size"
        bad = [o for o in node.outputs if o and not _is_batch(o, g1, gn, n)]
        if bad:
            return (f"{node.op} node {node.name!r} turns a batch of {n} into shape {gn.shapes.get(bad[0])} "
                    f"(at batch 1: {g1.shapes.get(bad[0])})")
        rank = len(gn.shapes.get(node.inputs[0], ())) if node.inputs and node.inputs[0] else 0
        if _axes_touch_0(node, rank, gn):
            return f"{node.op} node {node.name!r} acts along the batch axis"
    return None


class StreamedBatch:
    """Runs a batch of ``batch`` through single-image, single-thread compiled graphs
    (``streams``: one per core, sharing their ops), each on its own Python thread (the native
    plans release the GIL) over a contiguous share of the images. Looks like a CompiledGraph
    to the Engine."""

    def __init__(self, streams: Sequence, batch: int):
        self.streams = list(streams)
        self.batch = batch
        self.batching_note = f"{len(self.streams)} streams of single images"
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # The first stream's plan is the one a user inspects: the others are copies of it.
    @property
    def report(self):
        return self.streams[0].report

    @property
    def fraction_native(self) -> float:
        return self.streams[0].fraction_native

    @property
    def weight_bytes(self) -> int:
        """The streams share one copy of the weights (CompiledGraph.share)."""
        return self.streams[0].weight_bytes

    @property
    def graph(self) -> Graph:
        return self.streams[0].graph

    def profile(self, inputs: Sequence[np.ndarray], repeats: int = 5) -> list[dict]:
        """The first stream's per-op profile on the first image."""
        return self.streams[0].profile([x[:1] for x in inputs], repeats)

    def _run_share(self, stream, inputs: Sequence[np.ndarray], lo: int, hi: int, out: list) -> None:
        for i in range(lo, hi):
            res = stream.run([x[i:i + 1] for x in inputs])
            if out[0] is None:
                with self._lock:
                    if out[0] is None:
                        out[0] = [np.empty((self.batch,) + r.shape[1:], r.dtype) for r in res]
            for o, r in zip(out[0], res):
                o[i] = r[0]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        k = len(self.streams)
        bounds = [self.batch * i // k for i in range(k + 1)]
        out: list = [None]
        if k == 1:
            self._run_share(self.streams[0], inputs, 0, self.batch, out)
            return out[0]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="sparseinfer-stream")
        futures = [self._executor.submit(self._run_share, s, inputs, lo, hi, out)
                   for s, lo, hi in zip(self.streams[1:], bounds[1:-1], bounds[2:])]
        self._run_share(self.streams[0], inputs, bounds[0], bounds[1], out)
        for f in futures:
            f.result()
        return out[0]

