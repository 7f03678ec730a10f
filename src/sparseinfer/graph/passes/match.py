"""Small helpers the pattern-fusion passes share: constants, single consumers, operands."""

from __future__ import annotations

from typing import Callable

import numpy as np

from sparseinfer.graph.ir import Graph, Node, remove_unused

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


def apply_matches(graph: Graph, match: Callable[[Node], tuple[Node, list[Node]] | None], **changes) -> Graph:
    """Calls ``match`` on every node in order; each (fused node, matched nodes) it returns
    replaces the matched nodes, the fused node standing where the last of them stood (its
    inputs are all computed by then). A match overlapping an earlier one is dropped. Other
    graph fields change as given (e.g. constants the matcher added)."""
    order = {id(n): k for k, n in enumerate(graph.nodes)}
    removed: set[int] = set()
    placed: dict[int, Node] = {}
    for node in graph.nodes:
        if id(node) in removed:
            continue
        found = match(node)
        if found is None or any(id(n) in removed for n in found[1]):
            continue
        fused, nodes = found
        removed.update(id(n) for n in nodes)
        placed[id(max(nodes, key=lambda n: order[id(n)]))] = fused
    if not placed:
        return graph
    kept = tuple(placed.get(id(n), n) for n in graph.nodes if id(n) in placed or id(n) not in removed)
    return remove_unused(graph.replace(nodes=kept, **changes))
