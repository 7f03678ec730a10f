"""The compiler's intermediate representation: an ONNX-like dataflow graph with static shapes.

Values are named by strings (as in ONNX). Constants hold numpy arrays. Every value a pass can
see has a known shape and dtype, because the engine compiles for concrete input shapes.
Passes treat graphs as immutable: they return a new Graph (``Graph.replace``) rather than
mutating the one they got.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class Node:
    """One operation. ``attrs`` are plain Python values (ints, floats, lists, numpy arrays,
    strings); ``proto`` keeps the original ONNX node so a fallback region can be re-emitted
    exactly (subgraph attributes included)."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""
    proto: onnx.NodeProto | None = field(default=None, compare=False, repr=False)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def with_(self, **changes: Any) -> "Node":
        """A copy with fields changed. The original proto is kept for its attributes while op,
        attrs and domain are unchanged (inputs/outputs are rewritten by ``to_proto``)."""
        if any(k in changes for k in ("op", "attrs", "domain")):
            changes.setdefault("proto", None)
        return dataclasses.replace(self, **changes)

    def reads(self) -> tuple[str, ...]:
        """Every value the node reads: its inputs and, for If/Loop/Scan, the outer-scope
        values its subgraphs use."""
        names = [i for i in self.inputs if i]
        if self.proto is not None:
            for a in self.proto.attribute:
                for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                          list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
                    names += sorted(outer_scope_names(g))
        return tuple(dict.fromkeys(names))

    def to_proto(self) -> onnx.NodeProto:
        """The ONNX node for this IR node (for fallback regions and constant folding)."""
        if self.proto is not None:
            proto = onnx.NodeProto()
            proto.CopyFrom(self.proto)
            del proto.input[:]
            proto.input.extend(self.inputs)
            del proto.output[:]
            proto.output.extend(self.outputs)
            return proto
        attrs = {k: (numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v)
                 for k, v in self.attrs.items()}
        return helper.make_node(self.op, list(self.inputs), list(self.outputs), name=self.name,
                                domain=self.domain or None, **attrs)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    opset: int
    # Opset imports and IR version of the source model, to re-emit fallback regions.
    opset_imports: tuple[tuple[str, int], ...] = ()
    ir_version: int = 8

    def replace(self, **changes: Any) -> "Graph":
        return dataclasses.replace(self, **changes)

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        uses: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.reads():
                uses.setdefault(i, []).append(n)
        return uses

    def is_constant(self, value: str) -> bool:
        return value in self.constants

    def fresh_name(self, base: str) -> str:
        taken = set(self.shapes) | set(self.constants) | {o for n in self.nodes for o in n.outputs}
        k = 0
        while f"{base}__{k}" in taken:
            k += 1
        return f"{base}__{k}"


def remove_unused(graph: Graph) -> Graph:
    """Drops nodes whose outputs nobody needs and constants nobody reads."""
    needed = set(graph.outputs)
    kept: list[Node] = []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.outputs if o):
            kept.append(node)
            needed.update(node.reads())
    kept.reverse()
    constants = {k: v for k, v in graph.constants.items() if k in needed}
    return graph.replace(nodes=tuple(kept), constants=constants)


def min_ir_version(graph: Graph) -> int:
    """The oldest IR version that carries the graph's opsets: what a region re-emitted for
    ONNX Runtime declares (a newer onnx package would otherwise stamp a version ORT rejects)."""
    ops = [helper.make_opsetid(d, v) for d, v in graph.opset_imports if d in ("", "ai.onnx")]
    return max(helper.find_min_ir_version_for(ops, ignore_unknown=True), 3)


def outer_scope_names(g: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from enclosing scopes (not its inputs, initializers or nodes)."""
    local = {i.name for i in g.input} | {t.name for t in g.initializer}
    for n in g.node:
        local |= set(n.output)
    names: set[str] = {o.name for o in g.output} - local
    for n in g.node:
        names |= {i for i in n.input if i and i not in local}
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                        list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
                names |= outer_scope_names(sub) - local
    return names
