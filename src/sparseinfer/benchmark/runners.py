"""One runner per engine: build it for (model, batch, cores), then call it on inputs."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

RunFn = Callable[[dict], list]


def _sparseinfer(model: onnx.ModelProto, batch_size: int, num_cores: int) -> RunFn:
    import sparseinfer

    engine = sparseinfer.compile_model(model, batch_size=batch_size, num_cores=num_cores)
    names = engine.input_names
    run = engine.run
    return lambda feeds: run([feeds[n] for n in names])


def _onnxruntime(model: onnx.ModelProto, batch_size: int, num_cores: int) -> RunFn:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_cores
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    run = sess.run
    return lambda feeds: run(None, feeds)


RUNNERS: dict[str, Callable[[onnx.ModelProto, int, int], RunFn]] = {
    "sparseinfer": _sparseinfer,
    "onnxruntime": _onnxruntime,
}


def make_runner(engine: str, model: onnx.ModelProto, batch_size: int, num_cores: int) -> RunFn:
    if engine not in RUNNERS:
        raise ValueError(f"unknown engine {engine!r}; available: {', '.join(RUNNERS)}")
    return RUNNERS[engine](model, batch_size, num_cores)
