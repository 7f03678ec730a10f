"""Small helpers the pattern-fusion passes share: constants, single consumers, operands."""

from __future__ import annotations

import numpy as np

from sparseinfer.graph.ir import Graph, Node

STD = ("", "ai.onnx")


def is_op(node: Node | None, *ops: str) -> bool:
    return node is not None and node.domain in STD and node.op in ops


def scalar(graph: Graph, value: str) -> float | None:
    """The value of a constant holding one number (any shape of size 1), else None."""
    c = graph.constants.get(value)
    if c is None or np.asarray(c).size != 1:
        return None
    return float(np.asarray(c).reshape(()))


def near(x: float | None, target: float, rtol: float = 1e-4) -> bool:
    return x is not None and abs(x - target) <= rtol * abs(target)


def sole_consumer(graph: Graph, consumers: dict[str, list[Node]], value: str) -> Node | None:
    """The only node reading ``value`` (None if it has several readers or is a graph output)."""
    uses = consumers.get(value, [])
    if len(uses) != 1 or value in graph.outputs:
        return None
    return uses[0]


def other_input(node: Node, value: str) -> str | None:
    """For a two-input node reading ``value``, its other input (None if it does not read it)."""
    if len(node.inputs) != 2 or value not in node.inputs:
        return None
    return node.inputs[1] if node.inputs[0] == value else node.inputs[0]


def replace_nodes(graph: Graph, removed: set[int], placed: dict[int, Node], **changes) -> Graph:
    """The graph without the nodes whose id is in ``removed``, with ``placed[id]`` put where
    that (removed) node stood, and other fields changed as given."""
    nodes = []
    for n in graph.nodes:
        if id(n) in placed:
            nodes.append(placed[id(n)])
        elif id(n) not in removed:
            nodes.append(n)
    return graph.replace(nodes=tuple(nodes), **changes)
