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
    """Standard ONNX nodes (and constants they need) computing a FusedConv/FusedGemm."""
    if node.domain != DOMAIN:
        return [node.to_proto()], {}
    x, w, b, residual = (list(node.inputs) + ["", "", "", ""])[:4]
    tmp = f"{node.outputs[0]}__pre"
    protos: list[onnx.NodeProto] = []
    consts: dict[str, np.ndarray] = {}
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
    act, alpha, beta = node.attr("activation", "none"), node.attr("alpha", 0.0), node.attr("beta", 0.0)
    out = node.outputs[0]
    if act == "none":
        protos.append(helper.make_node("Identity", [cur], [out]))
    elif act == "silu":
        protos.append(helper.make_node("Sigmoid", [cur], [tmp + "s"]))
        protos.append(helper.make_node("Mul", [cur, tmp + "s"], [out]))
    elif act == "clip":
        lo, hi = f"{tmp}_lo", f"{tmp}_hi"
        consts[lo], consts[hi] = np.float32(alpha), np.float32(beta)
        protos.append(helper.make_node("Clip", [cur, lo, hi], [out]))
    elif act == "hard_sigmoid":
        protos.append(helper.make_node("HardSigmoid", [cur], [out], alpha=alpha, beta=beta))
    else:
        op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hard_swish": "HardSwish"}[act]
        protos.append(helper.make_node(op, [cur], [out]))
    return protos, consts


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
        g = helper.make_graph(protos, "fallback", inputs=[_value_info(n, graph) for n in self.inputs],
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


def _value_info(name: str, graph: Graph) -> onnx.ValueInfoProto:
    """The element type only: ONNX Runtime infers shapes itself, and a declared shape taken from
    static inference can be wrong (If branches of different ranks)."""
    if name not in graph.dtypes:
        return onnx.ValueInfoProto(name=name)
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(graph.dtypes[name]), None)
