"""Compiler: optimized IR -> an executable of native segments (our kernels, one Plan each)
and fallback segments (ONNX Runtime), in topological order."""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sparseinfer import _core
from sparseinfer.compiler import kernel_choice
from sparseinfer.compiler.builder import NativeSegmentPlan, PlanBuilder
from sparseinfer.compiler.lowering import lowering_for
from sparseinfer.errors import ExecutionError, InputError
from sparseinfer.fallback import FallbackRegion
from sparseinfer.graph.ir import Graph, Node

log = logging.getLogger("sparseinfer")


@dataclass(frozen=True)
class NodeReport:
    """How one (optimized) node runs: natively with which kernels, or in the fallback."""

    name: str
    op: str
    native: bool
    kernels: tuple[str, ...]
    choice: dict | None = None  # dense vs sparse: weight sparsity, measured ms per candidate, chosen


def fit_weight_budget(plans: Sequence["CompiledGraph"], limit: float, images: Sequence[int] | None = None) -> None:
    """Measured choices of generated code in ``plans`` (their ops held once: no plan shares
    another's) only while the plans' compiled layers stay within ``limit`` bytes
    (kernel_choice.fit_weight_budget, the layers weighed by the images one run of their plan
    computes: ``images``, 1 each when None); the reports' kernel names follow."""
    per_plan = list(images) if images is not None else [1] * len(plans)
    layers = [(item, n) for plan, n in zip(plans, per_plan) for item in plan.generated_layers()]
    measured = [(item, n) for item, n in layers if "measured_ms" in item[1]]
    if measured:
        total = sum(plan.layer_weight_bytes for plan in plans)
        kernel_choice.fit_weight_budget([item for item, _ in measured], total, limit, [n for _, n in measured])
    for (op, choice), _ in layers:
        if "measured_ms" not in choice:  # forced: kept whatever the budget
            op.release_compressed()
    for plan in plans:
        plan.refresh_kernels()


def native_fraction(report: Sequence[NodeReport]) -> float:
    """The share of the nodes in ``report`` that run natively (1.0 for none)."""
    return sum(r.native for r in report) / len(report) if report else 1.0


class CompiledGraph:
    """The executable for one set of input shapes."""

    def __init__(self, graph: Graph, num_threads: int, pin_threads: bool = False, fit_budget: bool = True):
        """``fit_budget``: generated code kept within the weight budget of ``graph``'s dense weights;
        False: no limit applied yet, the caller fits plans to one (``fit_weight_budget``)."""
        self.graph = graph
        self.num_threads = num_threads
        self.pin_threads = pin_threads
        self.batching_note = "one plan"  # how a batch runs (the Engine may say more)
        block = _core.nchwc_block(_core.active_isa()) if hasattr(_core, "nchwc_block") else 8
        natives = [lowering_for(n, graph) for n in graph.nodes]

        # Maximal runs of consecutive nodes with the same placement.
        runs: list[tuple[bool, list[tuple[Node, object]]]] = []
        for node, low in zip(graph.nodes, natives):
            native = low is not None
            if runs and runs[-1][0] == native:
                runs[-1][1].append((node, low))
            else:
                runs.append((native, [(node, low)]))

        # Values each run must take in / hand out.
        needed_later: list[set[str]] = []
        later: set[str] = set(graph.outputs)
        for _, items in reversed(runs):
            needed_later.append(set(later))
            for node, _ in items:
                later.update(node.reads())
        needed_later.reverse()

        self.segments: list[object] = []
        self.report: list[NodeReport] = []
        for (native, items), after in zip(runs, needed_later):
            nodes = [n for n, _ in items]
            produced = {o for n in nodes for o in n.outputs if o}
            ins: list[str] = []
            for n in nodes:
                for i in n.reads():
                    if i not in produced and i not in graph.constants and i not in ins:
                        ins.append(i)
            outs = [o for n in nodes for o in n.outputs if o and o in after]
            # Graph inputs/outputs first, in graph order, so a whole-graph segment is called directly.
            ins.sort(key=lambda v: graph.inputs.index(v) if v in graph.inputs else len(graph.inputs))
            outs.sort(key=lambda v: graph.outputs.index(v) if v in graph.outputs else len(graph.outputs))
            if native:
                b = PlanBuilder(graph, block, num_threads, pin_threads)
                for i in ins:
                    b.add_segment_input(i)
                for n, low in items:
                    low.emit(b, n)
                seg = b.finish(outs)
                for n in nodes:
                    self.report.append(NodeReport(n.name, n.op, True, tuple(seg.kernels.get(n.name, ["view"])),
                                                  b.choices.get(n.name)))
                self.segments.append(seg)
            else:
                self.segments.append(FallbackRegion(graph, nodes, ins, outs, num_threads))
                for n in nodes:
                    self.report.append(NodeReport(n.name, n.op, False, ("onnxruntime",)))
        if fit_budget:
            fit_weight_budget([self], kernel_choice.weight_budget() * kernel_choice.dense_weight_bytes(graph))
        fallback_ops = sorted({r.op for r in self.report if not r.native})
        if fallback_ops:
            log.warning("sparseinfer: %d of %d nodes run on the ONNX Runtime fallback; op types: %s",
                        sum(not r.native for r in self.report), len(self.report), ", ".join(fallback_ops))
        # Every plan and fallback region holds its own copy of the weights it reads: keep only
        # the constants that are graph outputs (returned by run) to not hold the weights twice.
        self.graph = dataclasses.replace(graph, constants={k: v for k, v in graph.constants.items()
                                                           if k in graph.outputs})
        self._single = (self.segments[0] if len(self.segments) == 1
                        and isinstance(self.segments[0], NativeSegmentPlan)
                        and self.segments[0].inputs == list(graph.inputs)
                        and self.segments[0].outputs == list(graph.outputs) else None)

    def generated_layers(self) -> list[tuple[object, dict]]:
        """(sparse op, its choice) of the layers that chose generated code (see fit_weight_budget)."""
        choices = {r.name: r.choice for r in self.report if r.choice}
        return [(st.op, choices[st.node.name]) for seg in self.segments if isinstance(seg, NativeSegmentPlan)
                for st in seg.steps if st.node is not None and choices.get(st.node.name, {}).get("chosen")
                == "generated"]

    def refresh_kernels(self) -> None:
        """The report's kernel names after ops changed kernel (fit_weight_budget)."""
        kernels = {n: tuple(k) for seg in self.segments if isinstance(seg, NativeSegmentPlan)
                   for n, k in seg.kernels.items()}
        self.report = [dataclasses.replace(r, kernels=kernels.get(r.name, r.kernels)) for r in self.report]

    def share(self, num_threads: int | None = None) -> "CompiledGraph":
        """Another executable for the same shapes over the same compiled ops (weights held once)
        with arenas and thread pools of its own (``num_threads`` threads, default the same), so
        both can run at once: a stream of images (see micro_batch.py), or a one-thread twin
        (adaptive_threads.py). ONNX Runtime sessions (fallback regions) are shared: their run is
        thread-safe."""
        other = copy.copy(self)
        if num_threads is not None:
            other.num_threads = num_threads
        other.segments = [dataclasses.replace(seg, plan=seg.plan.share_ops(other.num_threads, self.pin_threads))
                          if isinstance(seg, NativeSegmentPlan) else seg for seg in self.segments]
        other._single = other.segments[0] if self._single is not None else None
        return other

    @property
    def fraction_native(self) -> float:
        return native_fraction(self.report)

    def output_shapes(self, names: Sequence[str]) -> list[tuple[int, ...]]:
        """The shapes of the graph outputs ``names``."""
        g = self.graph
        return [tuple(g.constants[o].shape if o in g.constants else g.shapes[o]) for o in names]

    @property
    def weight_bytes(self) -> int:
        """Bytes of the weights held by the native ops (packed dense or compressed sparse)."""
        return sum(int(seg.plan.weight_bytes) for seg in self.segments if isinstance(seg, NativeSegmentPlan))

    @property
    def layer_weight_bytes(self) -> int:
        """Bytes of the compiled weights of the layers whose kernel was chosen (convolutions and
        linear layers: what the weight budget covers, see kernel_choice)."""
        chosen = {r.name for r in self.report if r.choice}
        return sum(int(st.op.weight_bytes) for seg in self.segments if isinstance(seg, NativeSegmentPlan)
                   for st in seg.steps if st.node is not None and st.node.name in chosen)

    def profile(self, inputs: Sequence[np.ndarray], repeats: int = 5) -> list[dict]:
        """Median time of every native op and of every fallback region, in execution order.
        Native ops are timed inside whole passes over their plan (each op finds the caches as
        the ops before it left them, as in a real run), `repeats` passes after a first run."""
        import time

        rows: list[dict] = []
        env: dict[str, np.ndarray] = dict(zip(self.graph.inputs, inputs))
        for seg in self.segments:
            if isinstance(seg, NativeSegmentPlan):
                args = [np.ascontiguousarray(env[i], dtype=self.graph.dtypes[i]) for i in seg.inputs]
                outs = seg.plan.run(args)  # binds the slots (and keeps `args` alive) for run_timed
                per_op = np.median(np.array([seg.plan.run_timed() for _ in range(repeats)]), axis=0)
                for st, sec in zip(seg.steps, per_op):
                    rows.append({"node": st.node.name if st.node else "(layout reorder/copy)",
                                 "op": st.node.op if st.node else "Reorder", "kernel": st.op.kernel_name,
                                 "native": True, "ms": float(sec) * 1e3})
            else:
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    outs = seg.run(env)
                    times.append(time.perf_counter() - t0)
                rows.append({"node": f"fallback region ({len(seg.nodes)} nodes)",
                             "op": ",".join(sorted({n.op for n in seg.nodes})), "kernel": "onnxruntime",
                             "native": False, "ms": float(np.median(times)) * 1e3})
            env.update(zip(seg.outputs, outs))
        return rows

    def run(self, inputs: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """The graph's outputs for ``inputs``; given ``out`` (C-contiguous arrays of the outputs'
        shapes and dtypes), written into those, which are returned."""
        try:
            if self._single is not None:  # the plan writes straight into `out`
                return self._single.plan.run(list(inputs), None if out is None else list(out))
            results = self._run(inputs)
        except IndexError as exc:  # a native Gather met an index outside its axis: bad input values
            raise InputError(str(exc)) from exc
        if out is None:
            return results
        if len(out) != len(results):
            raise ValueError(f"the graph has {len(results)} outputs, got {len(out)} arrays to write them into")
        for i, (o, r) in enumerate(zip(out, results)):
            if not (isinstance(o, np.ndarray) and o.dtype == r.dtype and o.flags.writeable and o.flags.c_contiguous):
                raise ValueError(f"output {i} must go into a writable C-contiguous {r.dtype} array")
            if o.size != r.size:
                raise ValueError(f"output {i} has {r.size} elements, its array {o.size}")
            o.reshape(-1)[:] = r.reshape(-1)
        return list(out)

    def _run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        env: dict[str, np.ndarray] = dict(zip(self.graph.inputs, inputs))
        for seg in self.segments:
            if isinstance(seg, NativeSegmentPlan):
                outs = seg.plan.run([np.ascontiguousarray(env[i], dtype=self.graph.dtypes[i]) for i in seg.inputs])
            else:
                try:
                    outs = seg.run(env)
                except Exception as exc:  # noqa: BLE001 - ORT raises its own types
                    ops = sorted({n.op for n in seg.nodes})
                    raise ExecutionError(f"fallback region with ops {ops} failed: {exc}") from exc
            env.update(zip(seg.outputs, outs))
        result = []
        for o in self.graph.outputs:
            if o in env:
                result.append(env[o])
            else:  # an output that is a constant or a graph input passed through
                result.append(np.array(self.graph.constants[o]) if o in self.graph.constants else env[o])
        return result
