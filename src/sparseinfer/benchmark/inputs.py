"""Seeded example inputs for any ONNX model, shaped for a given batch size."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx

from sparseinfer.errors import ModelLoadError
from sparseinfer.graph.onnx_import import graph_input_infos, resolve_input_shapes


def with_sequence(model: onnx.ModelProto, seq: int) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs' symbolic 'sequence' dimension is ``seq`` (text models)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in fixed.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param == "sequence":
                d.dim_value = seq
    return fixed


def make_inputs(model: onnx.ModelProto, batch_size: int = 1,
                input_shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]] | None = None,
                seed: int = 0) -> dict[str, np.ndarray]:
    """One array per model input (``input_shapes`` by name or in input order, as
    :func:`~sparseinfer.graph.onnx_import.resolve_input_shapes` takes them). Floats ~ N(0, 1).
    Integer inputs follow BERT conventions by name: '*mask*' all ones, '*type*' zeros, other ids
    uniform in [0, 1000) (valid for any vocabulary of at least 1000 tokens)."""
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


def parse_shapes(text: str | None) -> "dict[str, list[int]] | list[list[int]] | None":
    """'input_ids:1x128,attention_mask:1x128' -> dict; '1x3x224x224' -> list of shapes."""
    if not text:
        return None
    parts = [p for p in text.split(",") if p]
    try:
        if all(":" in p for p in parts):
            return {k: [int(d) for d in v.split("x")] for k, v in (p.split(":", 1) for p in parts)}
        return [[int(d) for d in p.split("x")] for p in parts]
    except ValueError:
        raise ValueError(f"--input-shapes {text!r} is not like 1x3x224x224 or "
                         f"input_ids:1x128,attention_mask:1x128") from None


def load_model(source: str) -> tuple[onnx.ModelProto, str]:
    """(ModelProto, local path) for an .onnx path or a ``zoo:`` stub (exported on first use).
    Raises OSError/ValueError naming the model when it cannot be read."""
    from sparseinfer.graph.onnx_import import load_model_proto

    path = source
    if source.startswith("zoo:"):
        from sparseinfer import zoo

        path = str(zoo.resolve(source))
    return load_model_proto(path), path


def feeds_for(model: onnx.ModelProto, batch_size: int, input_shapes: str | None = None,
              seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs at ``batch_size``; ``input_shapes`` as accepted by :func:`parse_shapes` fixes
    the other dimensions (a text model's sequence length): the first dimension of each shape is
    the batch, and ``batch_size`` sets it (so ``input_ids:1x128`` serves every batch size)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    shapes = parse_shapes(input_shapes)
    if isinstance(shapes, dict):
        shapes = {k: [batch_size, *v[1:]] for k, v in shapes.items()}
    elif shapes is not None:
        shapes = [[batch_size, *v[1:]] for v in shapes]
    try:
        return make_inputs(model, batch_size, shapes, seed=seed)
    except ModelLoadError as exc:  # e.g. a symbolic sequence axis and no --input-shapes
        raise ValueError(f"{exc} (on the command line: --input-shapes, e.g. "
                         f"input_ids:1x128,attention_mask:1x128)") from None
