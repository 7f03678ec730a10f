"""Seeded example inputs for any ONNX model, shaped for a given batch size."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx

from sparseinfer.graph.onnx_import import graph_input_infos, resolve_input_shapes


def make_inputs(model: onnx.ModelProto, batch_size: int = 1,
                input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """One array per model input. Floats ~ N(0, 1). Integer inputs follow BERT conventions by
    name: '*mask*' all ones, '*type*' zeros, other ids uniform in [0, 1000) (valid for any
    vocabulary of at least 1000 tokens)."""
    rng = np.random.default_rng(seed)
    shapes = resolve_input_shapes(model, batch_size, input_shapes)
    out: dict[str, np.ndarray] = {}
    for vi in graph_input_infos(model):
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        shape = shapes[vi.name]
        if dtype.kind == "f":
            out[vi.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[vi.name] = np.ones(shape, dtype)
        elif "mask" in vi.name.lower():
            out[vi.name] = np.ones(shape, dtype)
        elif "type" in vi.name.lower():
            out[vi.name] = np.zeros(shape, dtype)
        else:
            out[vi.name] = rng.integers(0, 1000, shape).astype(dtype)
    return out
