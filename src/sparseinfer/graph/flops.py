"""FLOP/MAC counts and per-layer weight sparsity, computed from an ONNX model.

Counts the compute-heavy ops after ONNX shape inference with concrete input shapes:

* ``Conv``: ``N * prod(out_spatial) * C_out * (C_in / group) * prod(kernel)`` MACs;
  with zeros skipped, ``N * prod(out_spatial) * nnz(W)``.
* ``ConvTranspose``: ``N * prod(in_spatial) * C_in * (C_out / group) * prod(kernel)`` MACs;
  with zeros skipped, ``N * prod(in_spatial) * nnz(W)``.
* ``Gemm`` / ``MatMul``: ``M * N * K`` per (broadcast) batch; with zeros skipped, a constant
  (initializer) operand counts only its nonzeros. MatMuls between two activations (attention)
  are counted dense.

FLOPs are ``2 * MACs`` (bias, activations and normalisation are not counted, as is customary).

Our fused ``Attention`` node (the compiler's IR, not ONNX) is counted by :func:`attention_macs`:
its two batched products, ``B * H * Sq * Sk * (D + Dv)`` MACs (scale, mask and softmax not counted).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class LayerStats:
    """One counted node. ``weight`` is the constant operand (None for activation x activation)."""

    node: str
    op: str
    weight: str | None
    weight_shape: tuple[int, ...] | None
    reduction_axis: int | None  # axis of ``weight`` summed over (input channels / features)
    weight_numel: int
    weight_nonzeros: int
    macs: int | None  # None when shapes could not be inferred
    nonzero_macs: int | None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.weight_nonzeros / self.weight_numel if self.weight_numel else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weight_shape"] = list(self.weight_shape) if self.weight_shape is not None else None
        d["sparsity"] = round(self.sparsity, 6)
        return d


@dataclass
class FlopReport:
    """Totals and per-layer stats. ``flops`` = 2 * ``macs``."""

    input_shapes: dict[str, list[int]]
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(layer.macs or 0 for layer in self.layers)

    @property
    def nonzero_macs(self) -> int:
        return sum(layer.nonzero_macs or 0 for layer in self.layers)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def nonzero_flops(self) -> int:
        return 2 * self.nonzero_macs

    @property
    def unknown(self) -> list[str]:
        """Nodes whose shapes could not be inferred (not included in the totals)."""
        return [layer.node for layer in self.layers if layer.macs is None]

    def weight_sparsity(self, weights: Sequence[str] | None = None) -> float:
        """Fraction of zeros over the given weight initializers (default: all counted weights)."""
        seen: dict[str, LayerStats] = {}
        for layer in self.layers:
            if layer.weight is not None and (weights is None or layer.weight in weights):
                seen.setdefault(layer.weight, layer)
        numel = sum(s.weight_numel for s in seen.values())
        nnz = sum(s.weight_nonzeros for s in seen.values())
        return 1.0 - nnz / numel if numel else 0.0


def _concrete_inputs(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None,
                     dim_values: Mapping[str, int]) -> dict[str, list[int]]:
    inits = {i.name for i in model.graph.initializer}
    shapes: dict[str, list[int]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if input_shapes and vi.name in input_shapes:
            shapes[vi.name] = [int(d) for d in input_shapes[vi.name]]
            continue
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif d.dim_param in dim_values:
                dims.append(int(dim_values[d.dim_param]))
            else:
                dims.append(1)
        shapes[vi.name] = dims
    return shapes


def _infer(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> dict[str, list[int | None]]:
    """Shapes of every value after fixing the inputs. Initializer data is left out of the copy
    given to shape inference (only their shapes matter) to keep it cheap for big models."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    g = light.graph
    g.node.extend(model.graph.node)
    g.output.extend(model.graph.output)
    init_names = set()
    for init in model.graph.initializer:
        init_names.add(init.name)
        # Small integer initializers may feed Reshape etc.: keep them so data propagation works.
        if init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) or _numel(init.dims) <= 64:
            g.initializer.append(init)
        else:
            g.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        new = copy.deepcopy(vi)
        dims = new.type.tensor_type.shape.dim
        for d, v in zip(dims, shapes[vi.name]):
            d.Clear()
            d.dim_value = int(v)
        g.input.append(new)
    try:
        inferred = shape_inference.infer_shapes(light, data_prop=True)
    except Exception:  # noqa: BLE001 - fall back to no data propagation
        inferred = shape_inference.infer_shapes(light)
    out: dict[str, list[int | None]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in model.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _shapes_by_running(model: onnx.ModelProto, shapes_in: Mapping[str, Sequence[int]],
                       names: Sequence[str]) -> dict[str, list[int]]:
    """Shapes of ``names`` measured by running the model once on ONNX Runtime (zero inputs)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    wanted = list(dict.fromkeys(n for n in names if n not in existing))
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in wanted)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for vi in sess.get_inputs():
        dtype = onnx.helper.tensor_dtype_to_np_dtype(
            next(i for i in model.graph.input if i.name == vi.name).type.tensor_type.elem_type)
        feeds[vi.name] = np.zeros(shapes_in[vi.name], dtype=dtype)
    values = sess.run(wanted, feeds)
    return {n: list(v.shape) for n, v in zip(wanted, values)}


def _numel(dims: Sequence[int | None]) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _known(shape: Sequence[int | None] | None) -> bool:
    return shape is not None and all(d is not None for d in shape)


def analyze_flops(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None,
                  dim_values: Mapping[str, int] | None = None) -> FlopReport:
    """Counts MACs/FLOPs (dense and zeros-skipped) and weight sparsity of ``model``.

    ``input_shapes`` fixes input shapes by name; otherwise symbolic dims take their value from
    ``dim_values`` (e.g. ``{"batch": 1, "sequence": 128}``) or 1."""
    shapes_in = _concrete_inputs(model, input_shapes, dim_values or {})
    shapes = _infer(model, shapes_in)
    inits = {i.name: i for i in model.graph.initializer}
    constants = {}
    for node in model.graph.node:  # Constant nodes holding weights count as weights too
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    constants[node.output[0]] = a.t
    nnz_cache: dict[str, tuple[int, int]] = {}

    def weight_info(name: str):
        t = inits.get(name) or constants.get(name)
        if t is None:
            return None
        if name not in nnz_cache:
            arr = numpy_helper.to_array(t)
            nnz_cache[name] = (int(arr.size), int(np.count_nonzero(arr)))
        return tuple(int(d) for d in t.dims), *nnz_cache[name]

    needed = [v for node in model.graph.node if node.op_type in COUNTED_OPS
              for v in (*node.input[:2], node.output[0]) if not _known(shapes.get(v))]
    if needed:  # symbolic shape inference stopped somewhere (e.g. Slice on a buffer): measure them
        shapes.update(_shapes_by_running(model, shapes_in, needed))

    report = FlopReport(input_shapes=shapes_in)
    for i, node in enumerate(model.graph.node):
        if node.op_type not in COUNTED_OPS:
            continue
        name = node.name or f"{node.op_type}_{i}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        a_name, b_name = node.input[0], node.input[1]
        out_shape = shapes.get(node.output[0])
        macs = nz = None
        if node.op_type in ("Conv", "ConvTranspose"):
            w = weight_info(b_name)
            wshape = w[0] if w else shapes.get(b_name)
            numel, nnz = (w[1], w[2]) if w else (0, 0)
            x_shape = shapes.get(a_name)
            if _known(wshape):
                if node.op_type == "Conv" and _known(out_shape):
                    positions = out_shape[0] * _numel(out_shape[2:])
                    macs = positions * _numel(wshape)
                    nz = positions * (nnz if w else _numel(wshape))
                elif node.op_type == "ConvTranspose" and _known(x_shape):
                    positions = x_shape[0] * _numel(x_shape[2:])
                    macs = positions * _numel(wshape)
                    nz = positions * (nnz if w else _numel(wshape))
            report.layers.append(LayerStats(name, node.op_type, b_name if w else None,
                                            tuple(wshape) if w else None, 1 if node.op_type == "Conv" else 0,
                                            numel, nnz, macs, nz))
            continue
        # Gemm / MatMul
        sa, sb = shapes.get(a_name), shapes.get(b_name)
        wa, wb = weight_info(a_name), weight_info(b_name)
        if node.op_type == "Gemm":
            trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
            if _known(sa) and _known(sb):
                m = sa[1] if trans_a else sa[0]
                k = sa[0] if trans_a else sa[1]
                n = sb[0] if trans_b else sb[1]
                macs = m * n * k
                nz = macs
                if wb:
                    nz = m * wb[2]
                elif wa:
                    nz = n * wa[2]
            w, wname, axis = (wb, b_name, 1 if trans_b else 0) if wb else ((wa, a_name, 0 if trans_a else 1) if wa else (None, None, None))
        else:
            if _known(sa) and _known(sb):
                a2 = list(sa) if len(sa) > 1 else [1] + list(sa)
                b2 = list(sb) if len(sb) > 1 else list(sb) + [1]
                batch_a, batch_b = a2[:-2], b2[:-2]
                nd = max(len(batch_a), len(batch_b))
                batch_a = [1] * (nd - len(batch_a)) + batch_a
                batch_b = [1] * (nd - len(batch_b)) + batch_b
                batch = _numel([max(x, y) for x, y in zip(batch_a, batch_b)])
                m, k, n = a2[-2], a2[-1], b2[-1]
                macs = batch * m * k * n
                nz = macs
                if wb and len(sb) == 2:
                    nz = _numel(a2[:-1]) * wb[2]
                elif wa and len(sa) == 2:
                    nz = batch * n * wa[2]
            w, wname, axis = (wb, b_name, max(0, len(wb[0]) - 2)) if wb else ((wa, a_name, len(wa[0]) - 1) if wa else (None, None, None))
        report.layers.append(LayerStats(name, node.op_type, wname, tuple(w[0]) if w else None, axis,
                                        w[1] if w else 0, w[2] if w else 0, macs, nz))
    return report


def attention_macs(node, shapes: Mapping[str, Sequence[int]]) -> int:
    """MACs of a fused ``Attention`` IR node (:mod:`sparseinfer.graph.passes.fuse_attention`):
    Q K^T (``B*H*Sq*Sk*D``) plus P V (``B*H*Sq*Sk*Dv``), the two MatMuls it replaced."""
    from sparseinfer.graph.passes.fuse_attention import attention_dims

    b, h, sq, sk, d, dv = attention_dims(node, shapes)
    return b * h * sq * sk * (d + dv)
