"""Constant folding: nodes whose inputs are all constants become constants, and Shape/Size of
values with static shapes become constants (the engine compiles for concrete shapes)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sparseinfer.graph.ir import Graph, Node, min_ir_version, remove_unused

# Non-deterministic or stateful ops are never folded.
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
               "Bernoulli", "If", "Loop", "Scan"}


def _static_shape_constant(node: Node, graph: Graph) -> np.ndarray | None:
    if node.domain not in ("", "ai.onnx") or not node.inputs or node.inputs[0] not in graph.shapes:
        return None
    shape = graph.shapes[node.inputs[0]]
    if node.op == "Shape":
        start, end = node.attr("start", 0), node.attr("end", None)
        return np.asarray(shape[slice(start, end)], dtype=np.int64)
    if node.op == "Size":
        return np.asarray(int(np.prod(shape)), dtype=np.int64)
    return None


def fold_constants(graph: Graph) -> Graph:
    constants = dict(graph.constants)
    foldable: list[Node] = []
    folded_values: set[str] = set()
    kept: list[Node] = []
    for node in graph.nodes:
        static = _static_shape_constant(node, graph)
        if static is not None:
            constants[node.outputs[0]] = static
            continue
        if (node.op not in _NEVER_FOLD and node.domain in ("", "ai.onnx") and node.inputs
                and all((not i) or i in constants or i in folded_values for i in node.inputs)):
            foldable.append(node)
            folded_values.update(node.outputs)
            continue
        kept.append(node)
    if foldable:
        try:
            constants.update(_evaluate(foldable, constants, graph))
        except Exception:  # noqa: BLE001 - e.g. an op ORT rejects: leave those nodes to run later
            static = {o for o in constants if o not in graph.constants}
            kept = [n for n in graph.nodes if not (n.outputs and n.outputs[0] in static)]
            constants = {k: v for k, v in constants.items() if k in graph.constants or k in static}
    shapes = dict(graph.shapes)
    dtypes = dict(graph.dtypes)
    for name, arr in constants.items():
        shapes[name] = tuple(arr.shape)
        dtypes[name] = arr.dtype
    return remove_unused(graph.replace(nodes=tuple(kept), constants=constants, shapes=shapes, dtypes=dtypes))


def _evaluate(nodes: list[Node], constants: dict[str, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
    """Runs the foldable nodes once on ONNX Runtime (exact ONNX semantics for every op)."""
    import onnxruntime as ort

    produced = {o for n in nodes for o in n.outputs if o}
    needed = {i for n in nodes for i in n.inputs if i and i not in produced}
    outputs = sorted(produced)
    g = helper.make_graph(
        [n.to_proto() for n in nodes], "fold",
        inputs=[],
        outputs=[onnx.ValueInfoProto(name=o) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(constants[i]), i) for i in sorted(needed)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in graph.opset_imports])
    model.ir_version = min_ir_version(graph)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip(outputs, sess.run(outputs, {})))
