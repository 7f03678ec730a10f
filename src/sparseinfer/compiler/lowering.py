"""Lowering: IR nodes -> native ops of a Plan. One entry per op type says whether a node can
run natively (``supports``) and emits its ops (``emit``). Nodes without a lowering, or whose
``supports`` says no, run in a fallback region on ONNX Runtime."""

from __future__ import annotations

from typing import Callable

import numpy as np

from sparseinfer import _core
from sparseinfer.compiler import kernel_choice
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
        if groups == 1 and self._sparse_wins(b, node, op, w, bias, strides, pads, dil, shape, act, r_name):
            layout = sparse_layout(shape)
            op = _core.SparseConvOp(w, bias, strides, pads, dil, list(shape), *act, _core.active_isa(), bool(r_name),
                                    layout == "cnhw")
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
    def _sparse_wins(b, node, dense_op, w, bias, strides, pads, dil, shape, act, r_name) -> bool:
        """Sparse (plain NCHW, compressed weights) or dense (NCHWc, packed) for this conv: forced
        by SPARSEINFER_KERNELS, else measured (kernel_choice). Records the decision in b.choices."""
        sparsity = kernel_choice.weight_sparsity(w)
        forced = kernel_choice.mode()
        report: dict = {"weight_sparsity": round(sparsity, 4), "mode": forced}
        b.choices[node.name] = report
        if forced == "dense" or (forced == "auto" and sparsity < kernel_choice.MIN_SPARSITY):
            report["chosen"] = "dense"
            return False
        if forced == "sparse":
            report["chosen"] = "sparse"
            return True
        sparse_layout_ = sparse_layout(shape)
        sparse_op = _core.SparseConvOp(w, bias, strides, pads, dil, list(shape), *act, _core.active_isa(),
                                       bool(r_name), sparse_layout_ == "cnhw")
        out_shape = b.graph.shapes[node.outputs[0]]
        x_name = node.inputs[0]
        cands = []
        for name, op, layout in (("dense", dense_op, "plain" if dense_op.input_is_nchw else "nchwc"),
                                 ("sparse", sparse_op, sparse_layout_)):
            out_layout = sparse_layout_ if name == "sparse" else "nchwc"
            sizes = [b.physical_size(shape, layout)]
            if r_name:
                sizes.append(b.physical_size(out_shape, out_layout))
            steps = b.reorder_ops(x_name, layout)
            reorders, reorder_sizes = [op_ for op_, _, _ in steps], [(i, o) for _, i, o in steps]
            cands.append(kernel_choice.Candidate(
                name, op, sizes, b.physical_size(out_shape, out_layout),
                int(op.workspace_floats) if name == "sparse" else 0, reorders, reorder_sizes))
        best, measured = kernel_choice.choose(cands, b.num_threads)
        report.update(measured)
        return best.name == "sparse"


class FusedGemmLowering(Lowering):
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
        op = _core.GemmOp(m, w, bias, node.attr("activation", "none"), float(node.attr("alpha", 0.0)),
                          float(node.attr("beta", 0.0)), _core.active_isa(), bool(r_name))
        ins = [b.read(x_name)] + ([b.read(r_name)] if r_name else [])
        y = b.write(node.outputs[0], layout="plain")
        b.add(op, ins, [y], node)


register(DOMAIN, ("FusedConv",), FusedConvLowering())
register(DOMAIN, ("FusedGemm",), FusedGemmLowering())


class PoolLowering(Lowering):
    """MaxPool / AveragePool over 2-D windows, in NCHWc."""

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
        op = _core.PoolOp("max" if node.op == "MaxPool" else "avg", list(shape), kernel, strides, pads, dil,
                          bool(node.attr("count_include_pad", 0)), [out_shape[2], out_shape[3]], b.block,
                          _core.active_isa())
        x = b.read(node.inputs[0], layouts=("nchwc",))
        y = b.write(node.outputs[0], layout="nchwc")
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
