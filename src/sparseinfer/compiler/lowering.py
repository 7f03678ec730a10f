"""Lowering: IR nodes -> native ops of a Plan. One entry per op type says whether a node can
run natively (``supports``) and emits its ops (``emit``). Nodes without a lowering, or whose
``supports`` says no, run in a fallback region on ONNX Runtime."""

from __future__ import annotations

from typing import Callable

import numpy as np

from sparseinfer import _core
from sparseinfer.graph.ir import Graph, Node
from sparseinfer.graph.passes.fuse_epilogue import DOMAIN, activation_of

_STD = ("", "ai.onnx")
F32 = np.dtype(np.float32)


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


class UnaryLowering(Lowering):
    def supports(self, node, graph):
        if node.op == "Clip" and activation_of(node, graph) is None:
            return False
        return _all_f32(node, graph, (0,)) and graph.shapes.get(node.inputs[0]) is not None

    def emit(self, b, node):
        act, alpha, beta = activation_of(node, b.graph)
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
        b.add(_core.SoftmaxOp(outer, n, inner, node.op == "LogSoftmax"), [x], [y], node)


class AliasLowering(Lowering):
    """Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new shape; no op emitted."""

    def supports(self, node, graph):
        if node.op == "Reshape" and node.inputs[1] not in graph.constants:
            return False
        if node.op in ("Squeeze", "Unsqueeze") and len(node.inputs) > 1 and node.inputs[1] \
                and node.inputs[1] not in graph.constants:
            return False
        return _all_f32(node, graph, (0,))

    def emit(self, b, node):
        b.alias(node.outputs[0], node.inputs[0], node)


class IdentityLowering(Lowering):
    def supports(self, node, graph):
        return _all_f32(node, graph)

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
        b.add(_core.ReduceOp(list(shape), flags, node.op == "ReduceMean"), [x], [y], node)


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
