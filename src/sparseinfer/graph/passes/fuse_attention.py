"""Scaled dot-product attention into one node:

    scores = MatMul(Q, K^T) [/ c | * c] [+ mask];  P = Softmax(scores, last axis);  O = MatMul(P, V)

with Q, K, V of shape [B, H, S, D] - and where they come out of a Transpose of a [B, S, H, D]
projection (Q, V: perm 0,2,1,3; K^T: perm 0,2,3,1, or 0,2,1,3 then 0,1,3,2), that Transpose
too, and the Transpose of O back to [B, S, H, D]. The node (``sparseinfer.Attention``) reads
each operand in its own layout, so the attention block needs no transposes at all:

    Attention(q, k, v, [mask])  attrs: scale, q_layout, k_layout, v_layout, out_layout
                                (each "bshd" or "bhsd"); mask broadcasts to [B, H, Sq, Sk]
"""

from __future__ import annotations

import numpy as np

from sparseinfer.graph.ir import Graph, Node
from sparseinfer.graph.passes.fuse_epilogue import DOMAIN
from sparseinfer.graph.passes.match import apply_matches, is_op, scalar, sole_consumer

BSHD_TO_BHSD = [0, 2, 1, 3]


def _perm(node: Node | None) -> list[int] | None:
    return list(node.attr("perm") or []) if is_op(node, "Transpose") else None


def _operand(value: str, graph, consumers, producers, transposed: bool) -> tuple[str, str, list[Node]]:
    """(source value, its layout, absorbed Transposes) for Q / V (``transposed`` False: the
    MatMul reads [B, H, S, D]) or K^T (True: the MatMul reads [B, H, D, S])."""
    t = producers.get(value)
    if sole_consumer(graph, consumers, value) is not None:
        if not transposed and _perm(t) == BSHD_TO_BHSD:
            return t.inputs[0], "bshd", [t]
        if transposed and _perm(t) == [0, 2, 3, 1]:
            return t.inputs[0], "bshd", [t]
        if transposed and _perm(t) == [0, 1, 3, 2]:
            inner = producers.get(t.inputs[0])
            if _perm(inner) == BSHD_TO_BHSD and sole_consumer(graph, consumers, t.inputs[0]) is t:
                return inner.inputs[0], "bshd", [inner, t]
            return t.inputs[0], "bhsd", [t]
    if transposed:
        return "", "", []  # K^T computed some other way: not ours to read
    return value, "bhsd", []


def _are_scores(value: str, producers) -> bool:
    """``value`` is Q K^T, possibly scaled (the mask is the other operand of the Add)."""
    node = producers.get(value)
    if is_op(node, "Div", "Mul"):
        node = producers.get(node.inputs[0])
    return is_op(node, "MatMul")


def _match(mm2: Node, graph: Graph, consumers, producers):
    if not is_op(mm2, "MatMul") or any(len(graph.shapes.get(i, ())) != 4 for i in mm2.inputs):
        return None
    if any(graph.dtypes.get(i) != np.float32 for i in mm2.inputs):
        return None
    probs = mm2.inputs[0]
    softmax = producers.get(probs)
    if not is_op(softmax, "Softmax") or sole_consumer(graph, consumers, probs) is not mm2:
        return None
    axis = softmax.attr("axis", -1 if graph.opset >= 13 else 1)
    if axis not in (-1, 3):
        return None
    nodes = [softmax, mm2]
    cur = softmax.inputs[0]
    mask = ""
    node = producers.get(cur)
    if is_op(node, "Add") and sole_consumer(graph, consumers, cur) is softmax:
        for scores, m in (node.inputs, node.inputs[::-1]):
            if _are_scores(scores, producers) and m != scores and graph.dtypes.get(m) == np.float32:
                mask, cur = m, scores
                nodes.insert(0, node)
                break
    scale = 1.0
    node = producers.get(cur)
    if is_op(node, "Div", "Mul") and sole_consumer(graph, consumers, cur) is not None:
        c = scalar(graph, node.inputs[1])
        if c is not None and c != 0:
            scale = 1.0 / c if node.op == "Div" else c
            cur = node.inputs[0]
            nodes.insert(0, node)
    mm1 = producers.get(cur)
    if not is_op(mm1, "MatMul") or sole_consumer(graph, consumers, cur) is None:
        return None
    nodes.insert(0, mm1)
    q, q_layout, tq = _operand(mm1.inputs[0], graph, consumers, producers, False)
    k, k_layout, tk = _operand(mm1.inputs[1], graph, consumers, producers, True)
    v, v_layout, tv = _operand(mm2.inputs[1], graph, consumers, producers, False)
    if not k:
        return None
    out, out_layout = mm2.outputs[0], "bhsd"
    after = sole_consumer(graph, consumers, out)
    if _perm(after) == BSHD_TO_BHSD:
        out, out_layout = after.outputs[0], "bshd"
        nodes.append(after)
    # Shapes: Q [B, H, Sq, D], K [B, H, Sk, D], V [B, H, Sk, Dv] (as the MatMuls see them).
    qs, ks, vs = (graph.shapes[mm1.inputs[0]], graph.shapes[mm1.inputs[1]], graph.shapes[mm2.inputs[1]])
    if not (qs[:2] == ks[:2] == vs[:2] and qs[3] == ks[2] and ks[3] == vs[2]):
        return None  # broadcast batch/heads or mismatched dims: leave the MatMuls
    if mask:
        ms = graph.shapes.get(mask)
        full = (qs[0], qs[1], qs[2], ks[3])
        if ms is None or len(ms) > 4 or ms[-1:] != (ks[3],) or np.broadcast_shapes(ms, full) != full:
            return None
    attrs = {"scale": float(scale), "q_layout": q_layout, "k_layout": k_layout, "v_layout": v_layout,
             "out_layout": out_layout}
    inputs = (q, k, v) + ((mask,) if mask else ())
    return Node("Attention", inputs, (out,), attrs, name=mm2.name + "_attention", domain=DOMAIN), \
        tq + tk + tv + nodes


def attention_dims(node: Node, shapes: dict[str, tuple[int, ...]]) -> tuple[int, int, int, int, int, int]:
    """(batch, heads, query length Sq, key length Sk, head dim D, value head dim Dv) of a fused
    Attention ``node``, from its operands' shapes and layouts."""
    q, k, v = (shapes[i] for i in node.inputs[:3])

    def bhsd(shape: tuple[int, ...], layout: str) -> tuple[int, int, int, int]:
        return (shape[0], shape[2], shape[1], shape[3]) if layout == "bshd" else tuple(shape)

    b, h, sq, d = bhsd(q, node.attr("q_layout"))
    sk = bhsd(k, node.attr("k_layout"))[2]
    return b, h, sq, sk, d, bhsd(v, node.attr("v_layout"))[3]


def fuse_attention(graph: Graph) -> Graph:
    consumers, producers = graph.consumers(), graph.producers()
    return apply_matches(graph, lambda node: _match(node, graph, consumers, producers))
