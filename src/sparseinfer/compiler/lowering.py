"""Lowering: IR nodes -> native ops of a Plan. One entry per op type says whether a node can
run natively (``supports``) and emits its ops (``emit``). Nodes without a lowering, or whose
``supports`` says no, run in a fallback region on ONNX Runtime."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from sparseinfer import _core
from sparseinfer.compiler import kernel_choice
from sparseinfer.compiler.builder import F32, PLAN_DTYPES
from sparseinfer.graph.ir import Graph, Node
from sparseinfer.graph.passes.fuse_attention import attention_dims
from sparseinfer.graph.passes.fuse_epilogue import DOMAIN, activation_of

_STD = ("", "ai.onnx")


class Lowering:
    """Base: ``supports`` must not have side effects; ``emit`` adds ops to the builder."""

    def supports(self, node: Node, graph: Graph) -> bool:
        raise NotImplementedError

    def emit(self, b: "PlanBuilder", node: Node) -> None:  # noqa: F821 - defined in builder.py
        raise NotImplementedError


def _all_f32(node: Node, graph: Graph, inputs: tuple[int, ...] | None = None) -> bool:
    names = [node.inputs[i] for i in inputs] if inputs is not None else [i for i in node.inputs if i]
    names += [o for o in node.outputs if o]
    return all(graph.dtypes.get(n) == F32 for n in names)


def _in_plan(names, graph: Graph) -> bool:
    """Every named value has an element type plan slots can hold."""
    return all(graph.dtypes.get(n) in PLAN_DTYPES for n in names if n)


def _dtype_name(value: str, graph: Graph) -> str:
    return PLAN_DTYPES[graph.dtypes[value]]


def _constant_ints(node: Node, graph: Graph, index: int) -> list[int] | None:
    """Input ``index`` as a list of ints when it is a constant (None when absent or computed)."""
    if len(node.inputs) <= index or not node.inputs[index] or node.inputs[index] not in graph.constants:
        return None
    return [int(v) for v in np.asarray(graph.constants[node.inputs[index]]).reshape(-1)]


def _padded(shape, rank: int) -> list[int]:
    return [1] * (rank - len(shape)) + list(shape)


# Element-wise math that is not an epilogue activation (still one UnaryOp).
_MATH_UNARY = {"Erf": "erf", "Sqrt": "sqrt"}


class UnaryLowering(Lowering):
    @staticmethod
    def _function(node, graph):
        act = activation_of(node, graph)
        if act is None and node.op in _MATH_UNARY and node.domain in _STD:
            act = (_MATH_UNARY[node.op], 0.0, 0.0)
        return act

    def supports(self, node, graph):
        if self._function(node, graph) is None:
            return False
        return _all_f32(node, graph, (0,)) and graph.shapes.get(node.inputs[0]) is not None

    def emit(self, b, node):
        act, alpha, beta = self._function(node, b.graph)
        x = b.read(node.inputs[0], layouts=("nchwc", "plain"))
        y = b.write(node.outputs[0], like=x)
        b.add(_core.UnaryOp(b.size(x), act, alpha, beta), [x], [y], node)


_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Max": "max", "Min": "min"}


class BinaryLowering(Lowering):
    def supports(self, node, graph):
        if node.op in ("Max", "Min") and len(node.inputs) != 2:
            return False
        return _all_f32(node, graph)

    def emit(self, b, node):
        kind = _BINARY[node.op]
        out_shape = b.graph.shapes[node.outputs[0]]
        a_name, c_name = node.inputs
        blocked = b.blocked_binary_operands(a_name, c_name, out_shape) if kind in ("add", "sub", "mul") else None
        if blocked is not None:
            (a, a_shape), (c, c_shape), y_shape = blocked
            y = b.write(node.outputs[0], layout="nchwc")
        else:
            a, c = b.read(a_name), b.read(c_name)
            rank = len(out_shape)
            a_shape = (1,) * (rank - len(b.graph.shapes[a_name])) + tuple(b.graph.shapes[a_name])
            c_shape = (1,) * (rank - len(b.graph.shapes[c_name])) + tuple(b.graph.shapes[c_name])
            y_shape = out_shape
            y = b.write(node.outputs[0], layout="plain")
        b.add(_core.BinaryOp(kind, list(a_shape), list(c_shape), list(y_shape)), [a, c], [y], node)


class SoftmaxLowering(Lowering):
    def supports(self, node, graph):
        return _all_f32(node, graph)

    def emit(self, b, node):
        shape = b.graph.shapes[node.inputs[0]]
        rank = len(shape)
        axis = node.attr("axis", -1 if b.graph.opset >= 13 else 1)
        axis = axis + rank if axis < 0 else axis
        if b.graph.opset >= 13:
            outer, n, inner = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))
        else:  # opset < 13: softmax over the flattened trailing dims
            outer, n, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis:])), 1
        x = b.read(node.inputs[0])
        y = b.write(node.outputs[0], layout="plain")
        b.add(_core.SoftmaxOp(outer, n, inner, node.op == "LogSoftmax", _core.active_isa()), [x], [y], node)


class AliasLowering(Lowering):
    """Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new shape; no op emitted."""

    def supports(self, node, graph):
        if node.op == "Reshape" and node.inputs[1] not in graph.constants:
            return False
        if node.op in ("Squeeze", "Unsqueeze") and len(node.inputs) > 1 and node.inputs[1] \
                and node.inputs[1] not in graph.constants:
            return False
        return _in_plan([node.inputs[0], node.outputs[0]], graph)

    def emit(self, b, node):
        b.alias(node.outputs[0], node.inputs[0], node)


class IdentityLowering(Lowering):
    def supports(self, node, graph):
        return _in_plan(node.inputs + node.outputs, graph)

    def emit(self, b, node):
        x = b.read(node.inputs[0])
        y = b.write(node.outputs[0], layout="plain")
        b.add(_core.CopyOp(b.size(x)), [x], [y], node)


class TransposeLowering(Lowering):
    def supports(self, node, graph):
        return _all_f32(node, graph)

    def emit(self, b, node):
        shape = b.graph.shapes[node.inputs[0]]
        perm = node.attr("perm") or list(reversed(range(len(shape))))
        x = b.read(node.inputs[0])
        y = b.write(node.outputs[0], layout="plain")
        b.add(_core.TransposeOp(list(shape), list(perm)), [x], [y], node)


class ConcatLowering(Lowering):
    def supports(self, node, graph):
        return _all_f32(node, graph) and all(graph.shapes.get(i) is not None for i in node.inputs if i)

    def emit(self, b, node):
        ins = [i for i in node.inputs if i]
        out_shape = b.graph.shapes[node.outputs[0]]
        axis = node.attr("axis")
        axis = axis + len(out_shape) if axis < 0 else axis
        blocked = b.blocked_concat_operands(ins, axis)
        if blocked is not None:
            xs, outer, inners = blocked
            y = b.write(node.outputs[0], layout="nchwc")
        else:
            xs = [b.read(i) for i in ins]
            outer = int(np.prod(out_shape[:axis]))
            inners = [int(np.prod(b.graph.shapes[i][axis:])) for i in ins]
            y = b.write(node.outputs[0], layout="plain")
        b.add(_core.ConcatOp(outer, inners), xs, [y], node)


class ReduceLowering(Lowering):
    def _axes(self, node, graph):
        rank = len(graph.shapes[node.inputs[0]])
        if len(node.inputs) > 1 and node.inputs[1]:
            if node.inputs[1] not in graph.constants:
                return None
            axes = [int(a) for a in np.asarray(graph.constants[node.inputs[1]]).reshape(-1)]
        else:
            axes = node.attr("axes")
        if not axes:
            if node.attr("noop_with_empty_axes", 0):
                return None
            axes = list(range(rank))
        return sorted(a + rank if a < 0 else a for a in axes)

    def supports(self, node, graph):
        return _all_f32(node, graph, (0,)) and self._axes(node, graph) is not None

    def emit(self, b, node):
        shape = b.graph.shapes[node.inputs[0]]
        axes = self._axes(node, b.graph)
        x = b.read(node.inputs[0])
        y = b.write(node.outputs[0], layout="plain")
        flags = [d in axes for d in range(len(shape))]
        kind = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceL2": "l2"}[node.op]
        b.add(_core.ReduceOp(list(shape), flags, kind), [x], [y], node)


class PadLowering(Lowering):
    def supports(self, node, graph):
        if node.attr("mode", "constant") != "constant" or not _all_f32(node, graph, (0,)):
            return False
        if graph.opset >= 11:
            if node.inputs[1] not in graph.constants:
                return False
            if len(node.inputs) > 2 and node.inputs[2] and node.inputs[2] not in graph.constants:
                return False
            if len(node.inputs) > 3 and node.inputs[3]:
                return False  # explicit axes: rare, left to the fallback
        return True

    def emit(self, b, node):
        g = b.graph
        if g.opset >= 11:
            pads = [int(p) for p in g.constants[node.inputs[1]]]
            value = float(np.asarray(g.constants[node.inputs[2]]).reshape(())) if len(node.inputs) > 2 and node.inputs[2] else 0.0
        else:
            pads, value = list(node.attr("pads")), float(node.attr("value", 0.0))
        x = b.read(node.inputs[0])
        y = b.write(node.outputs[0], layout="plain")
        b.add(_core.PadOp(list(g.shapes[node.inputs[0]]), pads, value), [x], [y], node)


LOWERINGS: dict[tuple[str, str], Lowering] = {}


def register(domain: str, ops: tuple[str, ...], lowering: Lowering) -> None:
    for op in ops:
        LOWERINGS[(domain, op)] = lowering


for _d in _STD:
    register(_d, ("Relu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Clip"), UnaryLowering())
    register(_d, tuple(_BINARY), BinaryLowering())
    register(_d, ("Softmax", "LogSoftmax"), SoftmaxLowering())
    register(_d, ("Reshape", "Flatten", "Squeeze", "Unsqueeze"), AliasLowering())
    register(_d, ("Identity",), IdentityLowering())
    register(_d, ("Transpose",), TransposeLowering())
    register(_d, ("Concat",), ConcatLowering())
    register(_d, ("ReduceMean", "ReduceSum"), ReduceLowering())
    register(_d, ("Pad",), PadLowering())


# ---- transformer encoders: typed ops, indexing, batched MatMul, LayerNormalization ----------

class CastLowering(Lowering):
    def supports(self, node, graph):
        return _in_plan(node.inputs + node.outputs, graph)

    def emit(self, b, node):
        x = b.read(node.inputs[0])
        y = b.write(node.outputs[0], layout="plain")
        n = int(np.prod(b.graph.shapes[node.inputs[0]]))
        b.add(_core.CastOp(n, _dtype_name(node.inputs[0], b.graph), _dtype_name(node.outputs[0], b.graph)),
              [x], [y], node)


_COMPARE = {"Equal": "equal", "Less": "less", "Greater": "greater", "LessOrEqual": "less_or_equal",
            "GreaterOrEqual": "greater_or_equal", "And": "and", "Or": "or", "Xor": "xor"}
_FALSE = "@false"  # a constant bool scalar: Not(x) is Equal(x, false)


class CompareLowering(Lowering):
    """Comparisons and logic ops into a bool tensor, one kernel: also Not(x) = (x == false)
    and IsNaN(x) = (x != x)."""

    @staticmethod
    def _operands(node):
        if node.op == "Not":
            return "equal", (node.inputs[0], _FALSE)
        if node.op == "IsNaN":
            return "not_equal", (node.inputs[0], node.inputs[0])
        return _COMPARE[node.op], tuple(node.inputs)

    def supports(self, node, graph):
        if not _in_plan(node.inputs + node.outputs, graph) or len(node.inputs) != (1 if node.op in ("Not", "IsNaN") else 2):
            return False
        types = {graph.dtypes[i] for i in node.inputs}
        if node.op in ("And", "Or", "Xor", "Not"):
            return types == {np.dtype(np.bool_)}
        if node.op == "IsNaN":
            return types == {F32}
        return len(types) == 1

    def emit(self, b, node):
        g = b.graph
        kind, (a, c) = self._operands(node)
        rank = len(g.shapes[node.outputs[0]])
        ins = [b.read(a), b.read(c) if c != _FALSE else b.constant(_FALSE, np.zeros((), np.bool_))]
        shape_c = g.shapes[c] if c != _FALSE else ()
        op = _core.CompareOp(kind, _dtype_name(a, g), _padded(g.shapes[a], rank), _padded(shape_c, rank),
                             list(g.shapes[node.outputs[0]]))
        b.add(op, ins, [b.write(node.outputs[0], layout="plain")], node)


class WhereLowering(Lowering):
    def supports(self, node, graph):
        cond, x, y = node.inputs
        return (_in_plan(node.inputs + node.outputs, graph) and graph.dtypes[cond] == np.bool_
                and graph.dtypes[x] == graph.dtypes[y])

    def emit(self, b, node):
        g = b.graph
        out_shape = list(g.shapes[node.outputs[0]])
        rank = len(out_shape)
        op = _core.WhereOp(*[_padded(g.shapes[i], rank) for i in node.inputs], out_shape,
                           g.dtypes[node.outputs[0]].itemsize)
        b.add(op, [b.read(i) for i in node.inputs], [b.write(node.outputs[0], layout="plain")], node)


class ExpandLowering(Lowering):
    def supports(self, node, graph):
        return _in_plan([node.inputs[0], node.outputs[0]], graph) and node.inputs[1] in graph.constants

    def emit(self, b, node):
        g = b.graph
        out_shape = list(g.shapes[node.outputs[0]])
        op = _core.ExpandOp(_padded(g.shapes[node.inputs[0]], len(out_shape)), out_shape,
                            g.dtypes[node.outputs[0]].itemsize)
        b.add(op, [b.read(node.inputs[0])], [b.write(node.outputs[0], layout="plain")], node)


class GatherLowering(Lowering):
    """Gather along one axis (embedding lookups, x[:, 0]); indices int64 or int32, checked."""

    def supports(self, node, graph):
        data, idx = node.inputs
        return (_in_plan([data, node.outputs[0]], graph)
                and graph.dtypes.get(idx) in (np.dtype(np.int64), np.dtype(np.int32)))

    def emit(self, b, node):
        g = b.graph
        data, idx = node.inputs
        shape = g.shapes[data]
        axis = int(node.attr("axis", 0))
        axis = axis + len(shape) if axis < 0 else axis
        op = _core.GatherOp(int(np.prod(shape[:axis])), int(shape[axis]), int(np.prod(shape[axis + 1:])),
                            g.dtypes[data].itemsize, int(np.prod(g.shapes[idx])), g.dtypes[idx] == np.int32)
        b.add(op, [b.read(data), b.read(idx)], [b.write(node.outputs[0], layout="plain")], node)


def slice_params(node: Node, graph: Graph) -> tuple[list[int], list[int]] | None:
    """Per-dimension (starts, steps) of a Slice with constant parameters, clamped as ONNX
    specifies; None when a parameter is computed at run time."""
    shape = graph.shapes[node.inputs[0]]
    rank = len(shape)
    if graph.opset >= 10:
        starts, ends = _constant_ints(node, graph, 1), _constant_ints(node, graph, 2)
        if starts is None or ends is None:
            return None
        axes = _constant_ints(node, graph, 3)
        steps = _constant_ints(node, graph, 4)
        if (len(node.inputs) > 3 and node.inputs[3] and axes is None) or \
                (len(node.inputs) > 4 and node.inputs[4] and steps is None):
            return None
    else:
        starts, ends = list(node.attr("starts")), list(node.attr("ends"))
        axes, steps = node.attr("axes"), None
    axes = list(range(len(starts))) if axes is None else [a + rank if a < 0 else a for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    out_starts, out_steps = [0] * rank, [1] * rank
    for a, st, en, step in zip(axes, starts, ends, steps):
        d = shape[a]
        if step == 0:
            return None
        st = st + d if st < 0 else st
        st = min(max(st, 0), d) if step > 0 else min(max(st, 0), d - 1)
        out_starts[a], out_steps[a] = st, step
    return out_starts, out_steps


class SliceLowering(Lowering):
    def supports(self, node, graph):
        return _in_plan([node.inputs[0], node.outputs[0]], graph) and slice_params(node, graph) is not None

    def emit(self, b, node):
        g = b.graph
        starts, steps = slice_params(node, g)
        out_shape = list(g.shapes[node.outputs[0]])
        op = _core.SliceOp(list(g.shapes[node.inputs[0]]), starts, steps, out_shape, g.dtypes[node.inputs[0]].itemsize)
        b.add(op, [b.read(node.inputs[0])], [b.write(node.outputs[0], layout="plain")], node)


class SplitLowering(Lowering):
    """Split along one axis; the part sizes are read off the outputs' (static) shapes."""

    def supports(self, node, graph):
        return _in_plan([node.inputs[0]] + list(node.outputs), graph) and all(node.outputs)

    def emit(self, b, node):
        g = b.graph
        shape = g.shapes[node.inputs[0]]
        axis = int(node.attr("axis", 0))
        axis = axis + len(shape) if axis < 0 else axis
        widths = [int(g.shapes[o][axis]) for o in node.outputs]
        op = _core.SplitOp(int(np.prod(shape[:axis])), widths, int(np.prod(shape[axis + 1:])),
                           g.dtypes[node.inputs[0]].itemsize)
        b.add(op, [b.read(node.inputs[0])], [b.write(o, layout="plain") for o in node.outputs], node)


def matmul_shapes(a_shape, b_shape) -> tuple[list[int], list[int]]:
    """NumPy MatMul operand shapes as the batched kernel takes them: 1-D operands promoted,
    ranks equalised, and batch dims folded into M when b has none (one big GEMM)."""
    a = [1] + list(a_shape) if len(a_shape) == 1 else list(a_shape)
    c = list(b_shape) + [1] if len(b_shape) == 1 else list(b_shape)
    rank = max(len(a), len(c))
    a, c = _padded(a, rank), _padded(c, rank)
    if all(d == 1 for d in c[:-2]):
        a = [1] * (rank - 2) + [int(np.prod(a[:-1])), a[-1]]
    return a, c


class MatMulLowering(Lowering):
    """MatMul of two activations (attention's QK^T and PV), batched with broadcasting. MatMul
    with a constant 2-D weight became a FusedGemm (packed weights) before lowering."""

    def supports(self, node, graph):
        return _all_f32(node, graph) and all(len(graph.shapes[i]) >= 1 for i in node.inputs)

    def emit(self, b, node):
        g = b.graph
        a_shape, b_shape = matmul_shapes(g.shapes[node.inputs[0]], g.shapes[node.inputs[1]])
        op = _core.MatMulOp(a_shape, b_shape, False, _core.active_isa())
        b.add(op, [b.read(i) for i in node.inputs], [b.write(node.outputs[0], layout="plain")], node)


class LayerNormLowering(Lowering):
    """ONNX LayerNormalization (and ours, fused from its decomposition for opsets < 17):
    normalise over the axes from ``axis`` on; optionally also the Mean and InvStdDev outputs."""

    def supports(self, node, graph):
        if not _all_f32(node, graph):
            return False
        shape = graph.shapes[node.inputs[0]]
        axis = int(node.attr("axis", -1))
        axis = axis + len(shape) if axis < 0 else axis
        norm = tuple(shape[axis:])
        for i in node.inputs[1:3]:
            if not i:
                continue
            if i in graph.constants:
                try:
                    np.broadcast_to(graph.constants[i], norm)
                except ValueError:
                    return False
            elif int(np.prod(graph.shapes[i])) != int(np.prod(norm)):
                return False
        return 0 <= axis < len(shape) and int(np.prod(norm)) >= 1

    def emit(self, b, node):
        g = b.graph
        shape = g.shapes[node.inputs[0]]
        axis = int(node.attr("axis", -1))
        axis = axis + len(shape) if axis < 0 else axis
        n = int(np.prod(shape[axis:]))
        params = []
        for i in node.inputs[1:3]:
            if not i:
                continue
            if i in g.constants:
                full = np.broadcast_to(np.asarray(g.constants[i], np.float32), shape[axis:]).reshape(-1)
                params.append(b.constant(i + "@full", np.ascontiguousarray(full)))
            else:
                params.append(b.read(i))
        stats = any(node.outputs[1:])
        op = _core.LayerNormOp(int(np.prod(shape[:axis])), n, float(node.attr("epsilon", 1e-5)),
                               len(params) == 2, stats, _core.active_isa())
        outs = [b.write(node.outputs[0], layout="plain")]
        if stats:  # the op writes both; an unused one gets a scratch buffer
            outs += [b.write(o, layout="plain") if o else b.workspace(node, int(np.prod(shape[:axis])))
                     for o in (list(node.outputs) + ["", ""])[1:3]]
        b.add(op, [b.read(node.inputs[0])] + params, outs, node)


for _d in _STD:
    register(_d, ("Erf", "Sqrt", "Gelu"), UnaryLowering())
    register(_d, ("Cast",), CastLowering())
    register(_d, tuple(_COMPARE) + ("Not", "IsNaN"), CompareLowering())
    register(_d, ("Where",), WhereLowering())
    register(_d, ("Expand",), ExpandLowering())
    register(_d, ("Gather",), GatherLowering())
    register(_d, ("Slice",), SliceLowering())
    register(_d, ("Split",), SplitLowering())
    register(_d, ("MatMul",), MatMulLowering())
    register(_d, ("LayerNormalization",), LayerNormLowering())
    register(_d, ("ReduceL2",), ReduceLowering())


def _head_strides(shape, layout: str) -> tuple[int, int, int]:
    """(batch, head, row) strides in floats of a [B, S, H, D] ("bshd") or [B, H, S, D] tensor."""
    if layout == "bshd":
        _, s, h, d = shape
        return s * h * d, d, h * d
    _, h, s, d = shape
    return h * s * d, s * d, d


class AttentionLowering(Lowering):
    """Our fused Attention (graph/passes/fuse_attention.py): one kernel for every head."""

    def supports(self, node, graph):
        return _all_f32(node, graph) and all(len(graph.shapes[i]) == 4 for i in node.inputs[:3])

    def emit(self, b, node):
        g = b.graph
        q, k, v = node.inputs[:3]
        mask = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3] else ""
        lay = {n: node.attr(f"{n}_layout") for n in ("q", "k", "v", "out")}
        qs, ks, vs = g.shapes[q], g.shapes[k], g.shapes[v]
        dims = list(attention_dims(node, g.shapes))  # batch, heads, Sq, Sk, D, Dv
        sk = dims[3]
        strides = [*_head_strides(qs, lay["q"]), *_head_strides(ks, lay["k"]), *_head_strides(vs, lay["v"]),
                   *_head_strides(g.shapes[node.outputs[0]], lay["out"])]
        if mask:
            mb, mh, mq, _ = _padded(g.shapes[mask], 4)
            strides += [mh * mq * sk if mb > 1 else 0, mq * sk if mh > 1 else 0, sk if mq > 1 else 0]
        else:
            strides += [0, 0, 0]
        op = _core.AttentionOp(dims, strides, float(node.attr("scale", 1.0)), bool(mask), _core.active_isa())
        ins = [b.read(i) for i in (q, k, v)] + ([b.read(mask)] if mask else [])
        b.add(op, ins, [b.write(node.outputs[0], layout="plain")], node)


register(DOMAIN, ("Attention",), AttentionLowering())
register(DOMAIN, ("Gelu",), UnaryLowering())
register(DOMAIN, ("LayerNormalization",), LayerNormLowering())


def lowering_for(node: Node, graph: Graph) -> Lowering | None:
    """The lowering that runs ``node`` natively, or None (fallback)."""
    low = LOWERINGS.get((node.domain, node.op))
    if low is None:
        return None
    if any(v and v not in graph.shapes for v in node.inputs + node.outputs):
        return None  # a shape that depends on input values: only the fallback can run it
    try:
        return low if low.supports(node, graph) else None
    except (KeyError, TypeError, ValueError, IndexError):
        return None


# ---- producers with fused epilogues: conv (NCHWc) and GEMM ------------------------------------

def conv_pads(node: Node, in_hw: tuple[int, int], kernel: tuple[int, int], strides, dilations) -> list[int] | None:
    """[top, left, bottom, right] from pads or auto_pad."""
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", "", None):
        pads = list(node.attr("pads", [0, 0, 0, 0]))
        return [pads[0], pads[1], pads[2], pads[3]] if len(pads) == 4 else None
    if auto == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        b = total // 2 if auto == "SAME_UPPER" else total - total // 2
        begin.append(b)
        end.append(total - b)
    return [begin[0], begin[1], end[0], end[1]]


def sparse_layout(x_shape) -> str:
    """Sparse convs read channel-major planes: plain NCHW for one image; CNHW for a batch, so
    that one spmm covers every image (long vectorised runs even on 7x7 maps)."""
    return "cnhw" if x_shape[0] > 1 else "plain"


class FusedConvLowering(Lowering):
    def supports(self, node, graph):
        if not hasattr(_core, "ConvOp") or not _all_f32(node, graph):
            return False
        w = graph.constants.get(node.inputs[1])
        x_shape = graph.shapes.get(node.inputs[0])
        if w is None or w.ndim != 4 or x_shape is None or len(x_shape) != 4:
            return False
        groups = int(node.attr("group", 1))
        return x_shape[1] == w.shape[1] * groups and w.shape[0] % groups == 0

    def emit(self, b, node):
        g = b.graph
        x_name, w_name, b_name, r_name = (list(node.inputs) + ["", "", "", ""])[:4]
        w = np.ascontiguousarray(g.constants[w_name], np.float32)
        bias = np.ascontiguousarray(g.constants[b_name], np.float32) if b_name else None
        shape = g.shapes[x_name]
        kernel = (w.shape[2], w.shape[3])
        strides = list(node.attr("strides", [1, 1]))
        dil = list(node.attr("dilations", [1, 1]))
        pads = conv_pads(node, shape[2:], kernel, strides, dil)
        groups = int(node.attr("group", 1))
        act = (node.attr("activation", "none"), float(node.attr("alpha", 0.0)), float(node.attr("beta", 0.0)))
        op = _core.ConvOp(w, bias, strides, pads, dil, groups, list(shape), *act, _core.active_isa(), bool(r_name))
        kernel, timed = (self._choose(b, node, op, w, bias, strides, pads, dil, shape, act, r_name) if groups == 1
                         else ("dense", None))
        if kernel != "dense":
            layout = sparse_layout(shape)
            op = timed or _core.SparseConvOp(w, bias, strides, pads, dil, list(shape), *act, _core.active_isa(),
                                             bool(r_name), layout == "cnhw", kernel == "generated")
            x = b.read(x_name, layouts=(layout,))
            ins = [x] + ([b.read(r_name, layouts=(layout,))] if r_name else [])
            outs = [b.write(node.outputs[0], layout=layout)]
            if op.workspace_floats:
                outs.append(b.workspace(node, op.workspace_floats))
            b.add(op, ins, outs, node)
            return
        x = b.read(x_name, layouts=("plain",) if op.input_is_nchw else ("nchwc",))
        ins = [x] + ([b.read(r_name, layouts=("nchwc",))] if r_name else [])
        y = b.write(node.outputs[0], layout="nchwc")
        b.add(op, ins, [y], node)

    @staticmethod
    def _choose(b, node, dense_op, w, bias, strides, pads, dil, shape, act, r_name) -> tuple[str, object]:
        """Dense (NCHWc, packed) or sparse (plain NCHW, compressed weights; on AVX-512 also as
        generated code) for this conv: forced by SPARSEINFER_KERNELS, else measured
        (kernel_choice). Records the decision in b.choices. Returns the kernel and, when it was
        timed, its sparse op (not built twice: generating code takes time)."""
        sparse_layout_ = sparse_layout(shape)
        out_shape = b.graph.shapes[node.outputs[0]]
        x_name = node.inputs[0]
        generated = _core.active_isa() == "avx512"
        built: dict[str, object] = {}
        # Readers that run sparse want the output in the sparse layout: a dense kernel's NCHWc
        # output would be reordered for them (VGG-16's first layer: 12.8 MB), which its cost
        # includes, and a layer too dense for the sparse kernels has them timed too.
        sparse_next = FusedConvLowering._read_by_sparse_convs(b.graph, node.outputs[0])

        def candidates():
            def sparse_op(gen):
                return _core.SparseConvOp(w, bias, strides, pads, dil, list(shape), *act, _core.active_isa(),
                                          bool(r_name), sparse_layout_ == "cnhw", gen)
            ops = [("dense", dense_op, "plain" if dense_op.input_is_nchw else "nchwc"),
                   ("sparse", sparse_op(False), sparse_layout_)]
            if generated:
                ops.append(("generated", sparse_op(True), sparse_layout_))
            built.update((name, op) for name, op, _ in ops[1:])
            cands = []
            for name, op, layout in ops:
                out_layout = "nchwc" if name == "dense" else sparse_layout_
                sizes = [b.physical_size(shape, layout)]
                if r_name:
                    sizes.append(b.physical_size(out_shape, out_layout))
                steps = b.reorder_ops(x_name, layout)
                if sparse_next and out_layout != sparse_layout_:
                    steps += b.layout_change_ops(out_shape, out_layout, sparse_layout_)
                reorders, reorder_sizes = [op_ for op_, _, _ in steps], [(i, o) for _, i, o in steps]
                cands.append(kernel_choice.Candidate(
                    name, op, sizes, b.physical_size(out_shape, out_layout),
                    0 if name == "dense" else int(op.workspace_floats), reorders, reorder_sizes,
                    kernel_choice.weights_read(name, op)))
            return cands

        report = b.choices[node.name] = {}
        unfit = _spmm_columns_unfit(w.shape[1] * w.shape[2] * w.shape[3])
        kernel = kernel_choice.decide(report, w, candidates, b.num_threads, unfit, generated, sparse_next)
        return kernel, built.get(kernel)

    @staticmethod
    def _read_by_sparse_convs(g: Graph, value: str) -> bool:
        """Whether every reader of ``value`` is a conv whose weights are sparse enough for the
        sparse kernels (so it will most likely read ``value`` in the sparse layout), and the
        graph does not output it."""
        readers = g.consumers().get(value, [])
        if not readers or value in g.outputs:
            return False
        for r in readers:
            w = g.constants.get(r.inputs[1]) if r.op in ("Conv", "FusedConv") and len(r.inputs) > 1 else None
            if (w is None or w.ndim != 4 or r.inputs[0] != value or int(r.attr("group", 1)) != 1
                    or kernel_choice.weight_sparsity(w) < kernel_choice.MIN_SPARSITY):
                return False
        return True


# The spmm kernel stores column indices as uint16 (at most _SPMM_MAX_K weight columns: K of a
# linear layer, C x R x S of a conv) and addresses input rows by int32 element offsets ((K - 1)
# x tokens must fit). Layers beyond either stay dense.
_SPMM_MAX_K = _core.SPMM_MAX_K
_INT32_MAX = 2 ** 31 - 1


def _spmm_columns_unfit(columns: int) -> str | None:
    """Why the spmm kernel cannot take weights with ``columns`` columns, or None when it can."""
    if columns > _SPMM_MAX_K:
        return f"K = {columns} weight columns exceed the sparse kernel's limit of {_SPMM_MAX_K}"
    return None


class FusedGemmLowering(Lowering):
    """A linear layer with a constant 2-D weight (MatMul, Gemm, with their fused bias, residual
    and activation): y[T, N] from x[..., K] with T every leading dim flattened. Dense packed
    GEMM, or the sparse one (compressed weights, spmm over the tokens) when it measures faster."""

    def supports(self, node, graph):
        if not hasattr(_core, "GemmOp") or not _all_f32(node, graph):
            return False
        w = graph.constants.get(node.inputs[1])
        x_shape = graph.shapes.get(node.inputs[0])
        return w is not None and w.ndim == 2 and x_shape is not None and len(x_shape) >= 1 \
            and x_shape[-1] == w.shape[0]

    def emit(self, b, node):
        g = b.graph
        x_name, w_name, b_name, r_name = (list(node.inputs) + ["", "", "", ""])[:4]
        w = np.ascontiguousarray(g.constants[w_name], np.float32)
        bias = np.ascontiguousarray(g.constants[b_name], np.float32) if b_name else None
        m = int(np.prod(g.shapes[x_name][:-1]))
        act = (node.attr("activation", "none"), float(node.attr("alpha", 0.0)), float(node.attr("beta", 0.0)))
        # Feature-major ("fmajor": [N, tokens]) between sparse linear layers saves the sparse op
        # a transpose on each side: its input when the producer left it so, its output when
        # only linear layers read it (a dense one that reads it gets a reorder).
        x_fm = m > 1 and b.has(x_name, "fmajor")
        y_fm = m > 1 and not r_name and self._only_linear_layers_read(g, node.outputs[0])
        op = self._choose(b, node, m, w, bias, act, bool(r_name), x_fm, y_fm)
        sparse = isinstance(op, _core.SparseLinearOp)  # (the row kernel or generated code)
        ins = [b.read(x_name, ("fmajor",) if sparse and x_fm else ("plain",))] + ([b.read(r_name)] if r_name else [])
        outs = [b.write(node.outputs[0], layout="fmajor" if sparse and y_fm else "plain")]
        if getattr(op, "workspace_floats", 0):
            outs.append(b.workspace(node, int(op.workspace_floats)))
        b.add(op, ins, outs, node)

    def _only_linear_layers_read(self, g, value: str) -> bool:
        """Whether ``value`` is read only as the input x of linear layers this lowering takes
        (and is no graph output)."""
        readers = g.consumers().get(value, [])
        return bool(readers) and value not in g.outputs and all(
            n.op == "FusedGemm" and n.inputs[0] == value and value not in n.inputs[1:] and self.supports(n, g)
            for n in readers)

    @staticmethod
    def _choose(b, node, m: int, w: np.ndarray, bias, act, residual: bool, x_fm: bool = False, y_fm: bool = False):
        """The GemmOp or the SparseLinearOp (row kernel or, on AVX-512, generated code) for this
        layer (kernel_choice.decide; the decision goes to b.choices). Each op is built at most
        once. x_fm: x exists feature-major (the sparse op reads it so, the dense one after a
        reorder); y_fm: the sparse op writes y so."""
        isa = _core.active_isa()
        ops = {"dense": functools.cache(lambda: _core.GemmOp(m, w, bias, *act, isa, residual))}
        for name in ("sparse", "generated"):
            ops[name] = functools.cache(lambda gen=name == "generated": _core.SparseLinearOp(
                m, w, bias, *act, isa, residual, x_fm, y_fm, gen))
        # Generated code works over more than one token (one is a matrix-vector product), and is
        # timed against the others (auto mode) only over enough tokens to reuse it: its tiles
        # are 128 positions, and code that runs one tile per inference is fetched from memory
        # each time (BERT-base, one core, in the model: 0.98x at 128 tokens, 1.03x at 512).
        generated = isa == "avx512" and m > 1
        k, n = w.shape
        sizes = [m * k] + ([m * n] if residual else [])
        x_name = node.inputs[0]

        def candidates():
            steps = b.reorder_ops(x_name, "plain") if x_fm and not b.has(x_name, "plain") else []
            cands = [kernel_choice.Candidate("dense", ops["dense"](), sizes, m * n, 0, [op_ for op_, _, _ in steps],
                                             [(i, o) for _, i, o in steps],
                                             kernel_choice.weights_read("dense", ops["dense"]()))]
            for name in ("sparse", "generated") if generated and m >= 256 else ("sparse",):
                op = ops[name]()
                cands.append(kernel_choice.Candidate(name, op, sizes, m * n, int(op.workspace_floats),
                                                     weight_bytes=kernel_choice.weights_read(name, op)))
            return cands

        report = b.choices[node.name] = {}
        unfit = _spmm_columns_unfit(k)
        if unfit is None and (k - 1) * m > _INT32_MAX:
            unfit = f"(K - 1) x tokens = {(k - 1) * m} exceeds the sparse kernel's int32 offsets"
        return ops[kernel_choice.decide(report, w, candidates, b.num_threads, unfit, generated)]()


register(DOMAIN, ("FusedConv",), FusedConvLowering())
register(DOMAIN, ("FusedGemm",), FusedGemmLowering())


class PoolLowering(Lowering):
    """MaxPool / AveragePool over 2-D windows, in NCHWc or, after sparse convs, plain/CNHW."""

    def supports(self, node, graph):
        if not hasattr(_core, "PoolOp") or not _all_f32(node, graph, (0,)):
            return False
        if node.op == "MaxPool" and len([o for o in node.outputs if o]) > 1:
            return False  # the Indices output
        if node.attr("storage_order", 0):
            return False
        shape = graph.shapes.get(node.inputs[0])
        return shape is not None and len(shape) == 4 and len(node.attr("kernel_shape", [])) == 2

    def emit(self, b, node):
        g = b.graph
        shape = g.shapes[node.inputs[0]]
        out_shape = g.shapes[node.outputs[0]]
        kernel = list(node.attr("kernel_shape"))
        strides = list(node.attr("strides", [1, 1]))
        dil = list(node.attr("dilations", [1, 1]))
        pads = conv_pads(node, shape[2:], kernel, strides, dil)
        # Blocked when the input already is (dense convs); a sparse conv's plain or channel-major
        # output is pooled as it is, plane by plane (block 1), instead of being reordered twice.
        x = b.read(node.inputs[0], layouts=("nchwc", "plain", "cnhw"))
        blocked = b.phys[x].layout == "nchwc"
        planes = list(shape) if blocked else [1, shape[0] * shape[1], shape[2], shape[3]]
        op = _core.PoolOp("max" if node.op == "MaxPool" else "avg", planes, kernel, strides, pads, dil,
                          bool(node.attr("count_include_pad", 0)), [out_shape[2], out_shape[3]],
                          b.block if blocked else 1, _core.active_isa())
        y = b.write(node.outputs[0], like=x)
        b.add(op, [x], [y], node)


class GlobalAveragePoolLowering(Lowering):
    def supports(self, node, graph):
        shape = graph.shapes.get(node.inputs[0])
        return hasattr(_core, "GlobalAvgPoolOp") and _all_f32(node, graph) and shape is not None and len(shape) == 4

    def emit(self, b, node):
        n, c, h, w = b.graph.shapes[node.inputs[0]]
        x = b.read(node.inputs[0], layouts=("nchwc",))
        y = b.write(node.outputs[0], layout="nchwc")
        b.add(_core.GlobalAvgPoolOp(n, c, h * w, b.block, _core.active_isa()), [x], [y], node)


for _d in _STD:
    register(_d, ("MaxPool", "AveragePool"), PoolLowering())
    register(_d, ("GlobalAveragePool",), GlobalAveragePoolLowering())
