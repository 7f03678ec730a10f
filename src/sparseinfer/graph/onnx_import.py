"""ONNX -> IR: load and validate a model, fix its input shapes, infer every value's shape."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from sparseinfer.errors import ModelLoadError
from sparseinfer.graph.ir import Graph, Node

ModelLike = "str | os.PathLike | bytes | onnx.ModelProto"


def load_model_proto(model: Any) -> onnx.ModelProto:
    """Loads and checks an ONNX model given as a path, bytes or ModelProto.

    Raises ModelLoadError naming the problem (missing file, not ONNX, truncated, invalid)."""
    if isinstance(model, onnx.ModelProto):
        proto = model
        where = "the given ModelProto"
    elif isinstance(model, (bytes, bytearray)):
        proto = _parse(bytes(model), "the given bytes")
        where = "the given bytes"
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        where = str(path)
        if not path.exists():
            raise ModelLoadError(f"model file not found: {path} (expected an .onnx file or a zoo: stub)")
        if path.is_dir():
            raise ModelLoadError(f"{path} is a directory, expected an .onnx file")
        # Checked from the file (the C++ checker streams it) before our parse: checking the
        # parsed proto would serialize a copy of the whole model at the peak of the load.
        try:
            onnx.checker.check_model(str(path))
            path_error = None
        except Exception as exc:  # noqa: BLE001 - onnx raises several types
            path_error = exc
        proto = _parse(path.read_bytes(), str(path))  # a non-ONNX or truncated file fails here first
        if path_error is not None and proto.graph.output and proto.opset_import:
            raise ModelLoadError(f"{where} is not a valid ONNX model: {path_error}") from path_error
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            try:
                onnx.load_external_data_for_model(proto, str(path.parent))
            except Exception as exc:  # noqa: BLE001 - any failure here is a load error
                raise ModelLoadError(f"{path}: cannot load external weight data: {exc}") from exc
    else:
        raise ModelLoadError(
            f"cannot load a model from {type(model).__name__}: expected a path, bytes, "
            "an onnx.ModelProto or a 'zoo:NAME' stub")
    if not proto.graph.output or not proto.opset_import:
        raise ModelLoadError(f"{where} is not an ONNX model (no graph outputs or opset)")
    if isinstance(model, (str, os.PathLike)):
        return proto
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types
        raise ModelLoadError(f"{where} is not a valid ONNX model: {exc}") from exc
    return proto


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelLoadError(f"{where} is not an ONNX model or is truncated: {exc}") from exc
    return proto


def graph_input_infos(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The model's real inputs (graph inputs that are not initializers)."""
    inits = {t.name for t in proto.graph.initializer}
    return [vi for vi in proto.graph.input if vi.name not in inits]


def declared_shape(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def resolve_input_shapes(proto: onnx.ModelProto, batch_size: int,
                         input_shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]] | None
                         ) -> dict[str, tuple[int, ...]]:
    """Concrete shape of each input: explicit ``input_shapes`` win; otherwise the declared
    shape with a symbolic first dimension set to ``batch_size``. Other symbolic dims must be
    given explicitly."""
    infos = graph_input_infos(proto)
    given: dict[str, Sequence[int]] = {}
    if input_shapes is not None:
        if isinstance(input_shapes, Mapping):
            unknown = set(input_shapes) - {vi.name for vi in infos}
            if unknown:
                raise ModelLoadError(f"input_shapes names unknown inputs {sorted(unknown)}; "
                                     f"the model's inputs are {[vi.name for vi in infos]}")
            given = dict(input_shapes)
        else:
            shapes = list(input_shapes)
            if len(shapes) != len(infos):
                raise ModelLoadError(f"input_shapes has {len(shapes)} entries, the model has "
                                     f"{len(infos)} inputs {[vi.name for vi in infos]}")
            given = {vi.name: s for vi, s in zip(infos, shapes)}
    out: dict[str, tuple[int, ...]] = {}
    for vi in infos:
        if vi.name in given:
            shape = tuple(int(d) for d in given[vi.name])
            if any(d < 0 for d in shape):
                raise ModelLoadError(f"input_shapes[{vi.name!r}] = {shape} has a negative dimension")
            out[vi.name] = shape
            continue
        dims = declared_shape(vi)
        fixed = []
        for axis, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                fixed.append(d)
            elif axis == 0:
                fixed.append(batch_size)
            else:
                raise ModelLoadError(
                    f"input {vi.name!r} has a symbolic dimension {d!r} at axis {axis}; "
                    f"pass input_shapes={{'{vi.name}': [...]}} to compile_model")
        out[vi.name] = tuple(fixed)
    return out


def _attr_value(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


# Initializers with more elements than this go into shape inference as typed inputs without
# their data: inference only needs their shapes (small ones keep their values, which data
# propagation may read, e.g. a Reshape's target shape). passes/infer_shapes.py does the same
# for the IR's constants.
MAX_VALUE_ELEMENTS = 4096


def _with_fixed_inputs(proto: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of ``proto`` for shape inference: inputs fixed to ``shapes``, no value_info, and
    no data of large initializers (copying and inferring a 500 MB model's weights cost 2 GB)."""
    fixed = onnx.ModelProto()
    for fd, val in proto.ListFields():
        if fd.name != "graph":
            _copy_field(fixed, fd, val)
    g = fixed.graph
    for fd, val in proto.graph.ListFields():
        if fd.name not in ("initializer", "value_info"):
            _copy_field(g, fd, val)
    listed = {vi.name for vi in g.input}
    for t in proto.graph.initializer:
        numel = int(np.prod(t.dims)) if len(t.dims) else 1
        if numel <= MAX_VALUE_ELEMENTS or t.data_location == onnx.TensorProto.EXTERNAL:
            g.initializer.add().CopyFrom(t)
        elif t.name not in listed:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    for vi in g.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for d in shapes[vi.name]:
                dims.add().dim_value = d
    # Shapes of outputs and intermediates are recomputed for these inputs.
    for vo in g.output:
        vo.type.tensor_type.ClearField("shape")
    return fixed


def _copy_field(msg: Any, fd: Any, val: Any) -> None:
    if hasattr(val, "extend"):  # a repeated field
        getattr(msg, fd.name).extend(val)
    elif hasattr(val, "CopyFrom"):
        getattr(msg, fd.name).CopyFrom(val)
    else:
        setattr(msg, fd.name, val)


def _collect_types(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, np.dtype]]:
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, np.dtype] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.elem_type:
            dtypes[vi.name] = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            if all(d >= 0 for d in dims):
                shapes[vi.name] = tuple(dims)
    for t in g.initializer:
        shapes[t.name] = tuple(t.dims)
        dtypes[t.name] = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    return shapes, dtypes


def import_onnx(proto: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> Graph:
    """Builds the IR for concrete input shapes; every value gets a static shape and dtype."""
    fixed = _with_fixed_inputs(proto, input_shapes)
    try:
        inferred = shape_inference.infer_shapes(fixed, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - fall back to probing every value below
        inferred = fixed
    shapes, dtypes = _collect_types(inferred)
    g = inferred.graph

    # From the caller's proto: `inferred` lacks the data of large initializers.
    constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    nodes: list[Node] = []
    for i, n in enumerate(g.node):
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
            constants[n.output[0]] = _constant_value(attrs)
            continue
        nodes.append(Node(op=n.op_type, inputs=tuple(n.input), outputs=tuple(n.output), attrs=attrs,
                          name=n.name or f"{n.op_type}_{i}", domain=n.domain, proto=n))
    for name, arr in constants.items():
        shapes[name] = tuple(arr.shape)
        dtypes[name] = arr.dtype

    # Values whose shape ONNX inference cannot settle stay out of ``shapes``; constant
    # folding often settles them later (see passes.infer_shapes), and nodes touching the rest
    # (shapes that depend on input values) run on the fallback.
    inputs = tuple(vi.name for vi in graph_input_infos(proto))
    opset = next((op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")), 0)
    return Graph(nodes=tuple(nodes), inputs=inputs, outputs=tuple(o.name for o in g.output),
                 constants=constants, shapes=shapes, dtypes=dtypes, opset=opset,
                 opset_imports=tuple((op.domain, op.version) for op in proto.opset_import),
                 ir_version=proto.ir_version)


def _constant_value(attrs: Mapping[str, Any]) -> np.ndarray:
    if "value" in attrs:
        return np.asarray(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(list(attrs[key]), dtype=dtype)
    raise ModelLoadError(f"unsupported Constant attributes {sorted(attrs)}")
