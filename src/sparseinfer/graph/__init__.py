"""Graph layer: our IR, ONNX import, and graph-to-graph passes (pure functions)."""

from sparseinfer.graph.ir import Graph, Node
from sparseinfer.graph.onnx_import import import_onnx, load_model_proto

__all__ = ["Graph", "Node", "import_onnx", "load_model_proto"]
