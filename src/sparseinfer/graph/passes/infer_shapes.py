"""Re-runs ONNX shape inference on the IR: after constant folding has turned Shape/Size
subgraphs into constants, shapes that depended on them become static."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from sparseinfer.graph.ir import Graph, min_ir_version
from sparseinfer.graph.onnx_import import MAX_VALUE_ELEMENTS


def infer_shapes(graph: Graph) -> Graph:
    missing = [o for n in graph.nodes for o in n.outputs if o and (o not in graph.shapes or o not in graph.dtypes)]
    if not missing or any(n.domain not in ("", "ai.onnx") for n in graph.nodes):
        return graph
    # Only small constants (shapes, axes, scalars) carry their values: inference propagates
    # those; weights are declared by type and shape, which is all it needs of them (and
    # serialising hundreds of MB of weights per call is most of a BERT's compile time).
    small = {k: v for k, v in graph.constants.items() if np.asarray(v).size <= MAX_VALUE_ELEMENTS}
    declared = list(graph.inputs) + [k for k in graph.constants if k not in small]
    g = helper.make_graph(
        [n.to_proto() for n in graph.nodes], "infer",
        inputs=[helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(graph.dtypes[i]),
                                              list(graph.shapes[i])) for i in declared],
        outputs=[onnx.ValueInfoProto(name=o) for o in graph.outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in small.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in graph.opset_imports])
    model.ir_version = min_ir_version(graph)
    try:
        inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - keep what we know; unknown shapes mean fallback
        return graph
    shapes, dtypes = dict(graph.shapes), dict(graph.dtypes)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.elem_type and vi.name not in dtypes:
            dtypes[vi.name] = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if tt.HasField("shape") and vi.name not in shapes:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            if all(d >= 0 for d in dims):
                shapes[vi.name] = tuple(dims)
    return graph.replace(shapes=shapes, dtypes=dtypes)
