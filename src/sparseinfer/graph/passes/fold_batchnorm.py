"""BatchNormalization at inference is a per-channel affine map: fold it into the producing
Conv's weights and bias, or turn a standalone one into Mul + Add with per-channel constants."""

from __future__ import annotations

import numpy as np

from sparseinfer.graph.ir import Graph, Node, remove_unused


def _bn_affine(node: Node, graph: Graph) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) with bn(x) = x * scale + shift per channel, or None if not constant."""
    names = node.inputs[1:5]
    if len(names) != 4 or not all(n in graph.constants for n in names):
        return None
    if node.attr("training_mode", 0):
        return None
    gamma, beta, mean, var = (graph.constants[n].astype(np.float64) for n in names)
    scale = gamma / np.sqrt(var + float(node.attr("epsilon", 1e-5)))
    return scale, beta - mean * scale


def fold_batchnorm(graph: Graph) -> Graph:
    consumers = graph.consumers()
    producers = graph.producers()
    constants = dict(graph.constants)
    shapes, dtypes = dict(graph.shapes), dict(graph.dtypes)
    replaced: dict[int, Node | None] = {}  # id(original node) -> replacement (None: drop)
    extra: dict[int, list[Node]] = {}       # id(node) -> nodes to insert in its place

    def add_const(base: str, value: np.ndarray) -> str:
        name = graph.fresh_name(base)
        while name in constants:
            name = name + "_"
        constants[name] = value.astype(np.float32)
        shapes[name], dtypes[name] = tuple(value.shape), np.dtype(np.float32)
        return name

    for node in graph.nodes:
        if node.op != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        if len([o for o in node.outputs if o]) != 1 or graph.dtypes.get(node.inputs[0]) != np.float32:
            continue
        affine = _bn_affine(node, graph)
        if affine is None:
            continue
        scale, shift = affine
        x = node.inputs[0]
        conv = producers.get(x)
        if (conv is not None and conv.op == "Conv" and conv.domain in ("", "ai.onnx")
                and len(consumers.get(x, [])) == 1 and x not in graph.outputs
                and conv.inputs[1] in graph.constants
                and (len(conv.inputs) < 3 or not conv.inputs[2] or conv.inputs[2] in graph.constants)
                and id(conv) not in replaced):
            w = graph.constants[conv.inputs[1]].astype(np.float64)
            b = (graph.constants[conv.inputs[2]].astype(np.float64)
                 if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(w.shape[0]))
            w_name = add_const(conv.inputs[1] + "_bnfold", w * scale.reshape(-1, *([1] * (w.ndim - 1))))
            b_name = add_const(conv.name + "_bnfold_bias", b * scale + shift)
            replaced[id(conv)] = conv.with_(inputs=(conv.inputs[0], w_name, b_name), outputs=node.outputs)
            replaced[id(node)] = None
            continue
        # Standalone: y = x * scale + shift, broadcast over the channel axis 1.
        rank = len(graph.shapes[x])
        bshape = (-1,) + (1,) * (rank - 2)
        s_name = add_const(node.name + "_scale", scale.reshape(bshape))
        t_name = add_const(node.name + "_shift", shift.reshape(bshape))
        mid = graph.fresh_name(node.name + "_scaled")
        shapes[mid], dtypes[mid] = graph.shapes[x], np.dtype(np.float32)
        extra[id(node)] = [Node("Mul", (x, s_name), (mid,), name=node.name + "_mul"),
                           Node("Add", (mid, t_name), node.outputs, name=node.name + "_add")]
        replaced[id(node)] = None

    if not replaced:
        return graph
    nodes: list[Node] = []
    for node in graph.nodes:
        if id(node) in extra:
            nodes.extend(extra[id(node)])
        elif id(node) in replaced:
            if replaced[id(node)] is not None:
                nodes.append(replaced[id(node)])
        else:
            nodes.append(node)
    return remove_unused(graph.replace(nodes=tuple(nodes), constants=constants, shapes=shapes, dtypes=dtypes))
