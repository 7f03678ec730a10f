"""Epilogue fusion: a Conv or a constant-weight Gemm/MatMul absorbs the bias add, the residual
add and the activation that follow it, so the kernel applies them while the output is still in
registers. Produces ``sparseinfer.FusedConv`` / ``sparseinfer.FusedGemm`` nodes:

FusedConv(x, W, B?, residual?)   attrs: the Conv attrs + activation, alpha, beta
FusedGemm(x, W[K,N], B?[N], residual?) attrs: activation, alpha, beta (x is [..., K])
"""

from __future__ import annotations

import numpy as np

from sparseinfer.graph.ir import Graph, Node, remove_unused

DOMAIN = "sparseinfer"
_STD = ("", "ai.onnx")


def activation_of(node: Node, graph: Graph) -> tuple[str, float, float] | None:
    """(name, alpha, beta) if ``node`` is an activation the kernels can apply in an epilogue."""
    if node.op == "Gelu" and (node.domain in _STD or node.domain == DOMAIN):
        # ONNX Gelu (opset 20) and ours (graph/passes/fuse_gelu.py) share the attribute.
        approximate = node.attr("approximate", "none")
        return {"none": ("gelu", 0.0, 0.0), "tanh": ("gelu_tanh", 0.0, 0.0)}.get(approximate)
    if node.domain not in _STD:
        return None
    if node.op == "Relu":
        return "relu", 0.0, 0.0
    if node.op == "Sigmoid":
        return "sigmoid", 0.0, 0.0
    if node.op == "Tanh":
        return "tanh", 0.0, 0.0
    if node.op == "HardSwish":
        return "hard_swish", 0.0, 0.0
    if node.op == "HardSigmoid":
        return "hard_sigmoid", float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    if node.op == "Clip":
        lo, hi = -np.inf, np.inf
        if graph.opset < 11:
            lo, hi = node.attr("min", -3.4028234663852886e38), node.attr("max", 3.4028234663852886e38)
        else:
            for idx, default in ((1, -np.inf), (2, np.inf)):
                if len(node.inputs) > idx and node.inputs[idx]:
                    if node.inputs[idx] not in graph.constants:
                        return None
                    val = float(np.asarray(graph.constants[node.inputs[idx]]).reshape(()))
                    if idx == 1:
                        lo = val
                    else:
                        hi = val
        lo, hi = max(float(lo), -3.4e38), min(float(hi), 3.4e38)
        if lo == 0.0 and hi >= 3.4e38:
            return "relu", 0.0, 0.0
        return "clip", lo, hi
    return None


def _silu_partner(value: str, consumers: dict[str, list[Node]]) -> tuple[Node, Node] | None:
    """value -> Sigmoid -> s and Mul(value, s): the SiLU/Swish pattern, as (sigmoid, mul)."""
    uses = consumers.get(value, [])
    if len(uses) != 2:
        return None
    sig = next((u for u in uses if u.op == "Sigmoid" and u.domain in _STD), None)
    mul = next((u for u in uses if u.op == "Mul" and u.domain in _STD), None)
    if sig is None or mul is None or len(consumers.get(sig.outputs[0], [])) != 1:
        return None
    if set(mul.inputs) != {value, sig.outputs[0]}:
        return None
    return sig, mul


def _single_use(value: str, graph: Graph, consumers: dict[str, list[Node]], claimed: set[int]) -> Node | None:
    """The only consumer of ``value``, unless the value is a graph output or that consumer
    was already absorbed by another producer."""
    uses = consumers.get(value, [])
    if len(uses) != 1 or value in graph.outputs or id(uses[0]) in claimed:
        return None
    return uses[0]


def fuse_epilogues(graph: Graph) -> Graph:
    consumers = graph.consumers()
    constants = dict(graph.constants)
    shapes, dtypes = dict(graph.shapes), dict(graph.dtypes)
    dropped: set[int] = set()
    replacement: dict[int, Node] = {}
    producer_of_out = graph.producers()

    for node in graph.nodes:
        if node.domain not in _STD or id(node) in dropped:
            continue
        base = _as_producer(node, graph, constants, shapes, dtypes)
        if base is None:
            continue
        fused_op, inputs, attrs = base
        out = node.outputs[0]
        bias_name = inputs[2] if len(inputs) > 2 else ""
        residual = ""
        # Add: a per-channel constant joins the bias; a same-shape tensor is the residual (a
        # transformer's output projection has both: + bias, then + the skip connection).
        nxt = _single_use(out, graph, consumers, dropped | set(replacement))
        for _ in range(2):
            if nxt is None or nxt.op != "Add" or nxt.domain not in _STD:
                break
            other = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
            channels = _out_channels(fused_op, inputs, graph, constants)
            per_channel = _as_channel_vector(other, graph, shapes[out], fused_op, channels)
            if per_channel is not None:
                bias = per_channel + (constants[bias_name] if bias_name else 0.0)
                bias_name = graph.fresh_name(node.name + "_bias")
                constants[bias_name] = bias.astype(np.float32)
                shapes[bias_name], dtypes[bias_name] = bias.shape, np.dtype(np.float32)
            elif (not residual and other not in graph.constants and graph.shapes.get(other) == shapes[out]
                  and dtypes.get(other) == np.float32 and other != out):
                residual = other
            else:
                break
            dropped.add(id(nxt))
            out = nxt.outputs[0]
            nxt = _single_use(out, graph, consumers, dropped | set(replacement))
        act = ("none", 0.0, 0.0)
        if nxt is not None and activation_of(nxt, graph) is not None:
            act = activation_of(nxt, graph)
            dropped.add(id(nxt))
            out = nxt.outputs[0]
        else:
            silu = _silu_partner(out, consumers) if out not in graph.outputs else None
            if silu is not None and not any(id(n) in dropped or id(n) in replacement for n in silu):
                act = ("silu", 0.0, 0.0)
                dropped.update(id(n) for n in silu)
                out = silu[1].outputs[0]
        attrs.update(activation=act[0], alpha=act[1], beta=act[2])
        fused_inputs = (inputs[0], inputs[1], bias_name, residual)
        # The fused node takes the place of the last node it absorbs: a residual may be produced
        # after the conv/gemm (ResNet's downsample branch), so the producer's slot is too early.
        last = producer_of_out[out]
        dropped.add(id(node))
        dropped.discard(id(last))
        replacement[id(last)] = Node(fused_op, fused_inputs, (out,), attrs, name=node.name, domain=DOMAIN)

    if not replacement:
        return graph
    nodes = []
    for n in graph.nodes:
        if id(n) in dropped:
            continue
        nodes.append(replacement.get(id(n), n))
    return remove_unused(graph.replace(nodes=tuple(nodes), constants=constants, shapes=shapes, dtypes=dtypes))


def _as_producer(node: Node, graph: Graph, constants, shapes, dtypes):
    """(fused op, [x, W, B], attrs) for a Conv or a Gemm/MatMul with constant weights."""
    if any(graph.dtypes.get(i) != np.float32 for i in node.inputs if i):
        return None
    if node.op == "Conv" and node.inputs[1] in graph.constants and (
            len(node.inputs) < 3 or not node.inputs[2] or node.inputs[2] in graph.constants):
        attrs = {k: node.attrs[k] for k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
                 if k in node.attrs}
        return "FusedConv", [node.inputs[0], node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else ""], attrs
    if node.op == "MatMul" and node.inputs[1] in graph.constants and graph.constants[node.inputs[1]].ndim == 2:
        return "FusedGemm", [node.inputs[0], node.inputs[1], ""], {}
    if node.op == "Gemm" and node.inputs[1] in graph.constants and not node.attr("transA", 0):
        # At most one copy of the weight (VGG's first FC layer is 400 MB): none when it is
        # already float32, (K, N) and alpha is 1.
        w = graph.constants[node.inputs[1]]
        if w.dtype != np.float32:
            w = w.astype(np.float32)
        if node.attr("alpha", 1.0) != 1.0:
            w = w * np.float32(node.attr("alpha", 1.0))
        if node.attr("transB", 0):
            w = w.T
        w_name = graph.fresh_name(node.name + "_weight")
        constants[w_name] = np.ascontiguousarray(w)
        shapes[w_name], dtypes[w_name] = w.shape, np.dtype(np.float32)
        b_name = ""
        if len(node.inputs) > 2 and node.inputs[2]:
            if node.inputs[2] not in graph.constants:
                return None
            c = graph.constants[node.inputs[2]].astype(np.float32) * np.float32(node.attr("beta", 1.0))
            n_out = w.shape[1]
            if c.size == 1:
                c = np.full(n_out, float(c.reshape(())), np.float32)
            elif c.shape in ((n_out,), (1, n_out)):
                c = c.reshape(n_out)
            else:
                return None  # a full (M, N) C is a residual-like input: leave the Gemm alone
            b_name = graph.fresh_name(node.name + "_bias")
            constants[b_name] = c
            shapes[b_name], dtypes[b_name] = c.shape, np.dtype(np.float32)
        return "FusedGemm", [node.inputs[0], w_name, b_name], {}
    return None


def _out_channels(fused_op: str, inputs, graph: Graph, constants) -> int:
    w = constants[inputs[1]]
    return int(w.shape[0]) if fused_op == "FusedConv" else int(w.shape[1])


def _as_channel_vector(name: str, graph: Graph, out_shape, fused_op: str, channels: int):
    """The constant as one value per output channel, if it broadcasts only along channels."""
    if name not in graph.constants:
        return None
    c = np.asarray(graph.constants[name])
    if c.dtype != np.float32 or c.ndim > len(out_shape):
        return None
    full = (1,) * (len(out_shape) - c.ndim) + c.shape
    ch_axis = 1 if fused_op == "FusedConv" else len(out_shape) - 1
    if any(d != 1 for ax, d in enumerate(full) if ax != ch_axis):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,)).astype(np.float32) if c.size in (1, channels) else None
