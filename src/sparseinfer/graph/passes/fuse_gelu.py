"""GELU from its element-wise decomposition (as PyTorch and Hugging Face export it):

    erf form   0.5 * x * (1 + Erf(x / sqrt 2))          (x * (1 / sqrt 2) also accepted)
    tanh form  0.5 * x * (1 + Tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))   (x^3: Pow or Muls)

with the final products in any of the orders exporters write them: (x * a) * 0.5,
(x * 0.5) * a, x * (a * 0.5). Becomes one Gelu node (attribute approximate = none | tanh):
ONNX's own op from opset 20, ours (domain ``sparseinfer``) before. Epilogue fusion then moves
it into the producing GEMM, which applies it while the output is still in registers.
"""

from __future__ import annotations

import math

import numpy as np

from sparseinfer.graph.ir import Graph, Node
from sparseinfer.graph.passes.fuse_epilogue import DOMAIN
from sparseinfer.graph.passes.match import apply_matches, is_op, near, other_input, scalar, sole_consumer

SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _scaled_input(node: Node | None, graph: Graph, factor: float) -> str | None:
    """x when ``node`` computes x * factor (as Mul by factor or Div by 1 / factor)."""
    if is_op(node, "Mul"):
        for a, b in (node.inputs, node.inputs[::-1]):
            if near(scalar(graph, b), factor) and a not in graph.constants:
                return a
    if is_op(node, "Div") and near(scalar(graph, node.inputs[1]), 1.0 / factor):
        return node.inputs[0]
    return None


def _cube_of(value: str, producers, graph: Graph) -> tuple[str, list[Node]] | None:
    """x and the nodes when ``value`` = x^3 (Pow(x, 3), x * (x * x) or (x * x) * x)."""
    node = producers.get(value)
    if is_op(node, "Pow") and scalar(graph, node.inputs[1]) == 3.0:
        return node.inputs[0], [node]
    if is_op(node, "Mul"):
        for a, b in (node.inputs, node.inputs[::-1]):
            sq = producers.get(b)
            if is_op(sq, "Mul") and sq.inputs == (a, a):
                return a, [sq, node]
    return None


def _inner(fn: Node, graph: Graph, producers) -> tuple[str, list[Node]] | None:
    """x and the nodes computing the argument of Erf / Tanh from x."""
    arg = producers.get(fn.inputs[0])
    if fn.op == "Erf":
        x = _scaled_input(arg, graph, 1.0 / SQRT2)
        return (x, [arg]) if x is not None else None
    # Tanh: sqrt(2/pi) * (x + 0.044715 * x^3)
    s = _scaled_input(arg, graph, SQRT_2_OVER_PI)
    add = producers.get(s) if s is not None else None
    if not is_op(add, "Add"):
        return None
    for x, k in (add.inputs, add.inputs[::-1]):
        cube = _scaled_input(producers.get(k), graph, 0.044715)
        found = _cube_of(cube, producers, graph) if cube is not None else None
        if found is not None and found[0] == x:
            return x, [arg, add, producers[k]] + found[1]
    return None


def _outer(a: str, x: str, graph: Graph, consumers, producers) -> tuple[str, list[Node]] | None:
    """The output and nodes of 0.5 * x * a, in any of the three product orders."""
    m1 = sole_consumer(graph, consumers, a)
    if not is_op(m1, "Mul"):
        return None
    other = other_input(m1, a)
    if other == x:  # (x * a) * 0.5
        m2 = sole_consumer(graph, consumers, m1.outputs[0])
        if _scaled_input(m2, graph, 0.5) == m1.outputs[0]:
            return m2.outputs[0], [m1, m2]
        return None
    if near(scalar(graph, other), 0.5):  # x * (a * 0.5)
        m2 = sole_consumer(graph, consumers, m1.outputs[0])
        if is_op(m2, "Mul") and other_input(m2, m1.outputs[0]) == x:
            return m2.outputs[0], [m1, m2]
        return None
    half = producers.get(other)  # (x * 0.5) * a
    if _scaled_input(half, graph, 0.5) == x and sole_consumer(graph, consumers, other) is m1:
        return m1.outputs[0], [half, m1]
    return None


def _match(fn: Node, graph: Graph, consumers, producers) -> tuple[Node, list[Node]] | None:
    if not is_op(fn, "Erf", "Tanh"):
        return None
    inner = _inner(fn, graph, producers)
    if inner is None:
        return None
    x, before = inner
    if graph.dtypes.get(x) != np.float32:
        return None
    add1 = sole_consumer(graph, consumers, fn.outputs[0])
    if not is_op(add1, "Add") or not near(scalar(graph, other_input(add1, fn.outputs[0]) or ""), 1.0):
        return None
    outer = _outer(add1.outputs[0], x, graph, consumers, producers)
    if outer is None:
        return None
    out, after = outer
    nodes = before + [fn, add1] + after
    # Every intermediate value feeds only the pattern (x itself may have other readers).
    inside = {id(n) for n in nodes}
    for n in nodes:
        if n.outputs[0] != out and (n.outputs[0] in graph.outputs or
                                    any(id(c) not in inside for c in consumers.get(n.outputs[0], []))):
            return None
    fused = Node("Gelu", (x,), (out,), {"approximate": "none" if fn.op == "Erf" else "tanh"},
                 name=fn.name + "_gelu", domain="" if graph.opset >= 20 else DOMAIN)
    return fused, nodes


def fuse_gelu(graph: Graph) -> Graph:
    consumers, producers = graph.consumers(), graph.producers()
    return apply_matches(graph, lambda node: _match(node, graph, consumers, producers))
