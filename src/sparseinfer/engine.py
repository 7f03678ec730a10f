"""The user-facing engine: compile an ONNX model for this CPU, run it on numpy arrays."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from sparseinfer import _core
from sparseinfer.compiler import (CompiledGraph, NodeReport, adaptive_threads, fit_weight_budget, kernel_choice,
                                 micro_batch)
from sparseinfer.compiler.micro_batch import StreamedBatch, batch_separable
from sparseinfer.errors import InputError, ModelLoadError
from sparseinfer.graph import import_onnx, load_model_proto
from sparseinfer.graph.onnx_import import declared_shape, graph_input_infos, resolve_input_shapes
from sparseinfer.graph.passes import optimize

ModelSource = "str | os.PathLike | bytes | onnx.ModelProto"

log = logging.getLogger("sparseinfer")


def _load(model: Any) -> tuple[onnx.ModelProto, str, str | None]:
    """(proto, display name, path to re-read it from, or None when the caller's object is kept)."""
    if isinstance(model, str) and model.startswith("zoo:"):
        from sparseinfer import zoo

        path = str(zoo.resolve(model))
        return load_model_proto(path), model, path
    if isinstance(model, (str, os.PathLike)):
        return load_model_proto(model), str(model), str(model)
    if isinstance(model, onnx.ModelProto):
        return load_model_proto(model), model.graph.name or "<ModelProto>", None
    return load_model_proto(model), f"<{type(model).__name__}>", None


class Engine:
    """A model compiled for this machine. Call ``run([arrays])`` or ``engine(**named_arrays)``.

    A new input shape (e.g. another batch size) compiles the model once more for that shape
    and caches it; the fast path is never switched off by a dynamic dimension."""

    def __init__(self, model: Any, batch_size: int = 1, num_cores: int | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]] | None = None,
                 pin_threads: bool = False):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_cores is None:
            num_cores = _core.physical_core_count()
        if not isinstance(num_cores, (int, np.integer)) or num_cores < 1:
            raise ValueError(f"num_cores must be a positive integer, got {num_cores!r}")
        # A model read from a file is not kept in memory once compiled (its weights would be held
        # twice, as ONNX tensors and packed for our kernels); another input shape re-reads it.
        self._proto, self.model_name, self._path = _load(model)
        self.batch_size = int(batch_size)
        self.num_cores = int(num_cores)
        self.pin_threads = pin_threads
        # The CPUs the streams of a streamed batch are pinned to, one each.
        self._cpus = sorted(os.sched_getaffinity(0)) if pin_threads else []
        infos = graph_input_infos(self._proto)
        self.input_names: list[str] = [vi.name for vi in infos]
        self.output_names: list[str] = [o.name for o in self._proto.graph.output]
        self._input_dtypes = [np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
                              for vi in infos]
        # Dimensions the model fixes; the others (batch, sequence, ...) may change per call.
        self._fixed_dims = [[d if isinstance(d, int) and d > 0 else None for d in declared_shape(vi)]
                            for vi in infos]
        shapes = resolve_input_shapes(self._proto, self.batch_size, input_shapes)
        self.input_shapes: list[tuple[int, ...]] = [shapes[n] for n in self.input_names]
        self._compiled: dict[tuple[tuple[int, ...], ...], CompiledGraph] = {}
        self._lock = threading.Lock()
        del infos  # (they reference the proto, which _compile drops when it can re-read the file)
        self._default = self._compile(tuple(self.input_shapes))
        if self._path is not None:
            self._proto = None

    # ---- compilation ------------------------------------------------------------------------
    def _compile(self, shapes: tuple[tuple[int, ...], ...]) -> CompiledGraph:
        with self._lock:
            hit = self._compiled.get(shapes)
            if hit is None:
                proto = self._proto if self._proto is not None else load_model_proto(self._path)
                if self._path is not None:
                    self._proto = None
                hit = self._compile_batch(proto, shapes)
                if hit is None:
                    graph = import_onnx(proto, dict(zip(self.input_names, shapes)))
                    del proto  # (the file's proto, when nothing else holds it) before packing weights
                    graph = optimize(graph)  # (drops the unoptimized graph's weights, e.g. before a transpose)
                    hit = CompiledGraph(graph, self.num_cores, self.pin_threads)
                    if adaptive_threads.worth_adapting(hit):
                        hit = adaptive_threads.AdaptiveThreads(hit)
                self._compiled[shapes] = hit
            return hit

    def _compile_batch(self, proto: onnx.ModelProto,
                       shapes: tuple[tuple[int, ...], ...]) -> StreamedBatch | CompiledGraph | None:
        """For a batch of n >= cores images that the model computes independently and whose
        weights an image reuses (convolutions over a map; micro_batch.weight_reuse): one
        single-image plan per core (see compiler/micro_batch.py) when the single-image plan runs
        sparse kernels or when forced; for a dense model, whichever of streams and one plan
        measures faster. One plan when the model mixes images or uses its weights about once per
        image (an MLP: the batch reuses them). None: compile the batch as one plan."""
        mode = micro_batch.mode()
        n = shapes[0][0] if shapes and shapes[0] else 1
        # One single-thread stream per core: a batch smaller than the cores would leave some idle.
        if mode == "batched" or n < max(2, self.num_cores) or any(not s or s[0] != n for s in shapes):
            return None
        one = tuple((1,) + tuple(s[1:]) for s in shapes)
        g1 = import_onnx(proto, dict(zip(self.input_names, one)))
        reuse = micro_batch.weight_reuse(g1)
        if mode == "auto" and reuse < micro_batch.MIN_WEIGHT_REUSE:
            return None  # weights used about once per image (an MLP): the batch is what reuses them
        gn = import_onnx(proto, dict(zip(self.input_names, shapes)))
        reason = batch_separable(g1, gn, n)
        if reason is not None:
            log.info("sparseinfer: batch %d runs as one plan: %s", n, reason)
            del g1
            return CompiledGraph(optimize(gn), self.num_cores, self.pin_threads)  # (not imported again)
        tail = deep = None
        cut = micro_batch.batched_tail(g1)
        end = len(g1.nodes) if cut is None else cut
        stage = micro_batch.deep_stage(g1, end, -(-n // self.num_cores))
        start, m = stage if stage is not None else (end, 1)  # (the streams' micro-batches, if any)
        # The weight budget (kernel_choice) covers the engine: the streams' plans get what the
        # tail leaves of it.
        limit = kernel_choice.weight_budget() * kernel_choice.dense_weight_bytes(g1)
        head = micro_batch.section(g1, g1, 0, start)
        # Only the names of g1's constants are needed from here (to cut the other imports): its
        # weights go now, not to hold every weight twice while the tail and the deep stage compile.
        g1 = g1.replace(constants=dict.fromkeys(g1.constants))
        if cut is not None:
            tail = CompiledGraph(optimize(micro_batch.section(g1, gn, cut, len(gn.nodes))), self.num_cores,
                                 self.pin_threads)
            limit -= tail.layer_weight_bytes
        del gn  # (its weights, before the single-image plans pack theirs)
        # (Single-thread plans: pinned, each would bind its caller to the first CPU while it runs;
        # the streams' own threads are pinned instead, one CPU each.)
        if stage is not None:
            gm = import_onnx(proto, dict(zip(self.input_names, (((m,) + tuple(s[1:])) for s in shapes))))
            deep_graph = micro_batch.section(g1, gm, start, end)
            del gm
            deep = CompiledGraph(optimize(deep_graph), 1, False, fit_budget=False)
            del deep_graph
        first = CompiledGraph(optimize(head), 1, False, fit_budget=False)
        del g1, head
        # One budget for the streams' plans: a layer's time saved is weighed per image.
        fit_weight_budget([first] + ([deep] if deep else []), limit, images=[1, m])
        streamed = StreamedBatch([first] + [first.share() for _ in range(self.num_cores - 1)], n, tail,
                                 pin_cpus=self._cpus,
                                 deep=[deep] + [deep.share() for _ in range(self.num_cores - 1)] if deep else None,
                                 deep_images=m)
        sparse = any(kernel_choice.is_sparse(r.choice) for r in first.report)
        if mode == "streams" or sparse:
            streamed.batching_note = streamed.description + (
                " (sparse kernels chosen)" if sparse else f" ({micro_batch.ENV_VAR}=streams)")
            return streamed
        if streamed.weight_bytes > micro_batch.DENSE_TIMING_BUDGET:
            return None
        batched = CompiledGraph(optimize(import_onnx(proto, dict(zip(self.input_names, shapes)))),
                                self.num_cores, self.pin_threads)
        # Ones for integer inputs: valid indices and masks, and no integer division by zero.
        feeds = [np.random.default_rng(0).random(s).astype(d) if d.kind == "f" else np.ones(s, d)
                 for s, d in zip(shapes, self._input_dtypes)]
        try:
            t_streams, t_batched = micro_batch.time_both(streamed, batched, feeds)
        except Exception as exc:  # noqa: BLE001 - a model that needs real values to run: keep one plan
            log.info("sparseinfer: batch %d runs as one plan (timing with made-up inputs failed: %s)", n, exc)
            return batched
        best = streamed if t_streams < t_batched else batched
        best.batching_note = (f"{'streams' if best is streamed else 'one plan'}: measured "
                              f"{t_streams * 1e3:.1f} ms as {streamed.description}, "
                              f"{t_batched * 1e3:.1f} ms as one plan")
        return best

    # ---- running ----------------------------------------------------------------------------
    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Runs the model; ``inputs`` in the order of ``input_names``. Returns the outputs in
        the order of ``output_names``."""
        if not isinstance(inputs, (list, tuple)):
            raise InputError(f"Engine.run expects a list of arrays (one per input {self.input_names}), "
                             f"got {type(inputs).__name__}")
        if len(inputs) != len(self.input_names):
            raise InputError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        arrays = []
        key = []
        for name, dtype, expected, fixed, x in zip(self.input_names, self._input_dtypes, self.input_shapes,
                                                   self._fixed_dims, inputs):
            if not isinstance(x, np.ndarray):
                try:
                    x = np.asarray(x)
                except Exception as exc:  # noqa: BLE001
                    raise InputError(f"input {name!r} is not array-like: {exc}") from exc
            if x.dtype != dtype:
                raise InputError(f"input {name!r} has dtype {x.dtype}, expected {dtype}")
            if x.ndim != len(expected):
                raise InputError(f"input {name!r} has shape {x.shape}, expected rank {len(expected)} "
                                 f"like {tuple(expected)}")
            bad = [axis for axis, d in enumerate(fixed) if d is not None and axis < x.ndim and x.shape[axis] != d]
            if bad:
                raise InputError(f"input {name!r} has shape {x.shape}, but the model fixes dimension "
                                 f"{bad[0]} to {fixed[bad[0]]} (expected shape like {tuple(expected)})")
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            arrays.append(x)
            key.append(x.shape)
        key_t = tuple(key)
        compiled = self._default if key_t == tuple(self.input_shapes) else self._compiled.get(key_t)
        if compiled is None:
            try:
                compiled = self._compile(key_t)
            except Exception as exc:  # noqa: BLE001 - a shape the model cannot take
                raise InputError(f"inputs of shapes {[tuple(s) for s in key_t]} do not fit the model "
                                 f"(compiled for {self.input_shapes}): {exc}") from exc
        return compiled.run(arrays)

    def __call__(self, **named: np.ndarray) -> list[np.ndarray]:
        missing = [n for n in self.input_names if n not in named]
        extra = [n for n in named if n not in self.input_names]
        if missing or extra:
            raise InputError(f"named inputs do not match the model: missing {missing}, unexpected {extra}; "
                             f"expected {self.input_names}")
        return self.run([named[n] for n in self.input_names])

    # ---- introspection ------------------------------------------------------------------------
    @property
    def node_report(self) -> list[NodeReport]:
        """Per optimized node: native or fallback, and the kernels it runs."""
        return list(self._default.report)

    @property
    def input_dtypes(self) -> list[np.dtype]:
        """The dtype of each input, in the order of ``input_names``."""
        return list(self._input_dtypes)

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        """The shape of each output for the compiled input shapes, in the order of ``output_names``."""
        return self._default.output_shapes(self.output_names)

    @property
    def fraction_of_native_ops(self) -> float:
        return self._default.fraction_native

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights the compiled native kernels hold (compressed where sparse kernels
        were chosen, so this shrinks with sparsity)."""
        return self._default.weight_bytes

    @property
    def batching(self) -> str:
        """How the compiled batch runs: as one plan, or as one single-image plan per core
        ("streams"), and why (see sparseinfer/compiler/micro_batch.py)."""
        return self._default.batching_note

    @property
    def isa(self) -> str:
        return _core.active_isa()

    def __repr__(self) -> str:
        rep = self._default.report
        native = sum(r.native for r in rep)
        fallback_ops = sorted({r.op for r in rep if not r.native})
        return (f"Engine(model={self.model_name!r}, batch_size={self.batch_size}, num_cores={self.num_cores}, "
                f"isa={self.isa!r}, inputs={dict(zip(self.input_names, self.input_shapes))}, "
                f"native_ops={native}/{len(rep)}, fallback_ops={fallback_ops})")


def compile_model(model: Any, batch_size: int = 1, num_cores: int | None = None,
                  input_shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]] | None = None,
                  pin_threads: bool = False) -> Engine:
    """Compiles an ONNX model (path, bytes, ModelProto or ``zoo:NAME[-VARIANT]`` stub) for
    this CPU. ``num_cores`` defaults to all physical cores; ``input_shapes`` fixes symbolic
    dimensions other than the batch. ``pin_threads`` binds the engine's threads to CPUs of their
    own (the calling thread only while a run is on it)."""
    return Engine(model, batch_size=batch_size, num_cores=num_cores, input_shapes=input_shapes,
                  pin_threads=pin_threads)
