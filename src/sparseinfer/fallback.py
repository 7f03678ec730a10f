"""Fallback regions: the parts of a graph our kernels do not cover run on ONNX Runtime.

A region is re-emitted as a standalone ONNX model (its nodes, the constants they read, its
boundary values as inputs/outputs) and run in its own InferenceSession. Fused nodes of our
own domain are expanded back into standard ONNX ops first."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sparseinfer.graph.ir import Graph, Node, min_ir_version
from sparseinfer.graph.passes.fuse_epilogue import DOMAIN


def expand_fused(node: Node, graph: Graph) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """Standard ONNX nodes (and constants they need) computing a node of our domain:
    FusedConv/FusedGemm, Gelu, LayerNormalization, Attention."""
    if node.domain != DOMAIN:
        return [node.to_proto()], {}
    tmp = f"{node.outputs[0]}__pre"
    protos: list[onnx.NodeProto] = []
    consts: dict[str, np.ndarray] = {}
    if node.op == "Gelu":
        act = "gelu" if node.attr("approximate", "none") == "none" else "gelu_tanh"
        _activation(act, 0.0, 0.0, node.inputs[0], node.outputs[0], tmp, protos, consts)
        return protos, consts
    if node.op == "LayerNormalization":
        return _layer_norm(node, graph, tmp), {}
    if node.op == "Attention":
        return _attention(node, tmp)
    x, w, b, residual = (list(node.inputs) + ["", "", "", ""])[:4]
    if node.op == "FusedConv":
        conv_attrs = {k: v for k, v in node.attrs.items() if k not in ("activation", "alpha", "beta")}
        protos.append(helper.make_node("Conv", [x, w] + ([b] if b else []), [tmp + "0"], **conv_attrs))
    else:
        protos.append(helper.make_node("MatMul", [x, w], [tmp + "0"]))
        if b:
            protos.append(helper.make_node("Add", [tmp + "0", b], [tmp + "0b"]))
    cur = protos[-1].output[0]
    if residual:
        protos.append(helper.make_node("Add", [cur, residual], [tmp + "1"]))
        cur = tmp + "1"
    _activation(node.attr("activation", "none"), node.attr("alpha", 0.0), node.attr("beta", 0.0), cur,
                node.outputs[0], tmp, protos, consts)
    return protos, consts


def _activation(act: str, alpha: float, beta: float, x: str, out: str, tmp: str, protos: list[onnx.NodeProto],
                consts: dict[str, np.ndarray]) -> None:
    """Appends the standard nodes computing ``out = act(x)``."""
    def const(name: str, value: float) -> str:
        consts[f"{tmp}_{name}"] = np.float32(value)
        return f"{tmp}_{name}"

    if act == "none":
        protos.append(helper.make_node("Identity", [x], [out]))
    elif act == "silu":
        protos.append(helper.make_node("Sigmoid", [x], [tmp + "s"]))
        protos.append(helper.make_node("Mul", [x, tmp + "s"], [out]))
    elif act == "clip":
        protos.append(helper.make_node("Clip", [x, const("lo", alpha), const("hi", beta)], [out]))
    elif act == "hard_sigmoid":
        protos.append(helper.make_node("HardSigmoid", [x], [out], alpha=alpha, beta=beta))
    elif act in ("gelu", "gelu_tanh"):
        if act == "gelu":  # 1 + erf(x / sqrt 2)
            protos.append(helper.make_node("Mul", [x, const("rsqrt2", 1 / np.sqrt(2))], [tmp + "g0"]))
            protos.append(helper.make_node("Erf", [tmp + "g0"], [tmp + "g1"]))
        else:  # 1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))
            protos.append(helper.make_node("Mul", [x, x], [tmp + "g2"]))
            protos.append(helper.make_node("Mul", [tmp + "g2", x], [tmp + "g3"]))
            protos.append(helper.make_node("Mul", [tmp + "g3", const("c", 0.044715)], [tmp + "g4"]))
            protos.append(helper.make_node("Add", [x, tmp + "g4"], [tmp + "g5"]))
            protos.append(helper.make_node("Mul", [tmp + "g5", const("k", np.sqrt(2 / np.pi))], [tmp + "g6"]))
            protos.append(helper.make_node("Tanh", [tmp + "g6"], [tmp + "g1"]))
        protos.append(helper.make_node("Add", [tmp + "g1", const("one", 1.0)], [tmp + "g7"]))
        protos.append(helper.make_node("Mul", [x, const("half", 0.5)], [tmp + "g8"]))
        protos.append(helper.make_node("Mul", [tmp + "g8", tmp + "g7"], [out]))
    else:
        op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hard_swish": "HardSwish"}[act]
        protos.append(helper.make_node(op, [x], [out]))


def _attention(node: Node, tmp: str) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """Our Attention as Transposes into [B, H, S, D], MatMul, scale, mask, Softmax, MatMul."""
    q, k, v = node.inputs[:3]
    mask = node.inputs[3] if len(node.inputs) > 3 else ""
    lay = {n: node.attr(f"{n}_layout") for n in ("q", "k", "v", "out")}
    protos = []
    if lay["q"] == "bshd":
        protos.append(helper.make_node("Transpose", [q], [tmp + "q"], perm=[0, 2, 1, 3]))
        q = tmp + "q"
    protos.append(helper.make_node("Transpose", [k], [tmp + "kt"], perm=[0, 2, 3, 1] if lay["k"] == "bshd" else [0, 1, 3, 2]))
    if lay["v"] == "bshd":
        protos.append(helper.make_node("Transpose", [v], [tmp + "v"], perm=[0, 2, 1, 3]))
        v = tmp + "v"
    scale = f"{tmp}_scale"
    protos += [helper.make_node("MatMul", [q, tmp + "kt"], [tmp + "s0"]),
               helper.make_node("Mul", [tmp + "s0", scale], [tmp + "s1"])]
    cur = tmp + "s1"
    if mask:
        protos.append(helper.make_node("Add", [cur, mask], [tmp + "s2"]))
        cur = tmp + "s2"
    out = node.outputs[0]
    bhsd_out = out if lay["out"] == "bhsd" else tmp + "o"
    protos += [helper.make_node("Softmax", [cur], [tmp + "p"], axis=3),
               helper.make_node("MatMul", [tmp + "p", v], [bhsd_out])]
    if lay["out"] == "bshd":
        protos.append(helper.make_node("Transpose", [bhsd_out], [out], perm=[0, 2, 1, 3]))
    return protos, {scale: np.float32(node.attr("scale", 1.0))}


def _layer_norm(node: Node, graph: Graph, tmp: str) -> list[onnx.NodeProto]:
    """Our LayerNormalization (only created for opsets < 17) as its opset < 17 decomposition."""
    x, scale = node.inputs[0], node.inputs[1]
    rank = len(graph.shapes[x])
    axis = int(node.attr("axis", -1))
    axes = list(range(axis + rank if axis < 0 else axis, rank))
    eps = f"{tmp}_eps"
    protos = [
        helper.make_node("Constant", [], [eps], value=numpy_helper.from_array(np.array(node.attr("epsilon"), np.float32))),
        helper.make_node("ReduceMean", [x], [tmp + "m"], axes=axes),
        helper.make_node("Sub", [x, tmp + "m"], [tmp + "d"]),
        helper.make_node("Mul", [tmp + "d", tmp + "d"], [tmp + "d2"]),
        helper.make_node("ReduceMean", [tmp + "d2"], [tmp + "v"], axes=axes),
        helper.make_node("Add", [tmp + "v", eps], [tmp + "ve"]),
        helper.make_node("Sqrt", [tmp + "ve"], [tmp + "s"]),
        helper.make_node("Div", [tmp + "d", tmp + "s"], [tmp + "n"]),
    ]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    protos.append(helper.make_node("Mul", [tmp + "n", scale], [node.outputs[0] if not bias else tmp + "y"]))
    if bias:
        protos.append(helper.make_node("Add", [tmp + "y", bias], [node.outputs[0]]))
    return protos


class FallbackRegion:
    """Runs a list of IR nodes on ONNX Runtime."""

    def __init__(self, graph: Graph, nodes: Sequence[Node], inputs: Sequence[str], outputs: Sequence[str],
                 num_threads: int):
        import onnxruntime as ort

        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        protos: list[onnx.NodeProto] = []
        extra: dict[str, np.ndarray] = {}
        for n in self.nodes:
            p, c = expand_fused(n, graph)
            protos += p
            extra.update(c)
        read = {i for p in protos for i in p.input if i} | {i for n in self.nodes for i in n.reads()}
        inits = [numpy_helper.from_array(np.asarray(graph.constants[n]), n)
                 for n in sorted(read) if n in graph.constants and n not in self.inputs]
        inits += [numpy_helper.from_array(np.asarray(v), k) for k, v in extra.items()]
        g = helper.make_graph(protos, "fallback", inputs=[_value_info(n, graph, with_shape=True) for n in self.inputs],
                              outputs=[_value_info(n, graph) for n in self.outputs], initializer=inits)
        imports = dict(graph.opset_imports)
        imports.pop(DOMAIN, None)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in imports.items()])
        model.ir_version = min_ir_version(graph)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.outputs, {n: feeds[n] for n in self.inputs})


def _value_info(name: str, graph: Graph, with_shape: bool = False) -> onnx.ValueInfoProto:
    """The element type, and for region inputs the static shape: ONNX Runtime infers the rest
    itself. Some function ops (CausalConvWithState, LinearAttention) expand only when their
    input shapes are declared; an output's declared shape taken from static inference can be
    wrong (If branches of different ranks), so outputs carry none."""
    if name not in graph.dtypes:
        return onnx.ValueInfoProto(name=name)
    shape = graph.shapes.get(name) if with_shape else None
    if shape is not None and not all(isinstance(d, int) and d >= 0 for d in shape):
        shape = None
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(graph.dtypes[name]), shape)
