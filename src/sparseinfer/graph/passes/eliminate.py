"""Removes ops that only forward a value at inference: Identity, Dropout."""

from __future__ import annotations

from sparseinfer.graph.ir import Graph, Node, remove_unused


def _is_forwarding(node: Node, graph: Graph) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op == "Identity":
        return True
    if node.op == "Dropout":
        # Inference mode unless training_mode is a constant true; the mask output must be unused.
        training = node.inputs[2] if len(node.inputs) > 2 else ""
        if training and (training not in graph.constants or bool(graph.constants[training])):
            return False
        return len(node.outputs) < 2 or not node.outputs[1]
    return False


def eliminate_identities(graph: Graph) -> Graph:
    """Rewires consumers of Identity/Dropout to the forwarded value. A forwarding node whose
    output is a graph output stays (the output name must exist), as an Identity."""
    rename: dict[str, str] = {}
    nodes: list[Node] = []
    outputs = set(graph.outputs)
    for node in graph.nodes:
        node = node.with_(inputs=tuple(rename.get(i, i) for i in node.inputs)) if any(
            i in rename for i in node.inputs) else node
        if _is_forwarding(node, graph):
            src, dst = node.inputs[0], node.outputs[0]
            if dst in outputs:
                nodes.append(Node("Identity", (src,), (dst,), name=node.name))
            else:
                rename[dst] = src
            continue
        nodes.append(node)
    return remove_unused(graph.replace(nodes=tuple(nodes)))
