"""LayerNormalization from its decomposition, as exporters emit it before opset 17 (and as
hand-written models spell it):

    m = ReduceMean(x, trailing axes)        d = Sub(x, m)
    v = ReduceMean(Pow(d, 2) | Mul(d, d))   s = Sqrt(Add(v, eps))
    n = Div(d, s) | Mul(d, Reciprocal(s))   y = Add(Mul(n, gamma), beta)   (gamma, beta optional)

becomes one LayerNormalization node: the standard op from opset 17, ours (domain
``sparseinfer``, same attributes and inputs) before that, so a fallback region can still
re-emit it (fallback.expand_fused writes the decomposition back).
"""

from __future__ import annotations

import numpy as np

from sparseinfer.graph.ir import Graph, Node
from sparseinfer.graph.passes.fuse_epilogue import DOMAIN
from sparseinfer.graph.passes.match import apply_matches, is_op, other_input, scalar, sole_consumer


def _reduce_axes(node: Node, graph: Graph) -> list[int] | None:
    """Normalised axes of a ReduceMean with keepdims (attribute or constant input)."""
    if not is_op(node, "ReduceMean") or not node.attr("keepdims", 1):
        return None
    rank = len(graph.shapes.get(node.inputs[0], ()))
    if len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in graph.constants:
            return None
        axes = [int(a) for a in np.asarray(graph.constants[node.inputs[1]]).reshape(-1)]
    else:
        axes = list(node.attr("axes") or [])
    if not axes or rank == 0:
        return None
    return sorted(a + rank if a < 0 else a for a in axes)


def _match(mean: Node, graph: Graph, consumers) -> tuple[dict, list[Node]] | None:
    """The LayerNormalization that starts at ReduceMean ``mean``: (fields, matched nodes)."""
    x = mean.inputs[0]
    shape = graph.shapes.get(x)
    axes = _reduce_axes(mean, graph)
    if shape is None or axes is None or graph.dtypes.get(x) != np.float32:
        return None
    rank = len(shape)
    if axes != list(range(axes[0], rank)):
        return None  # only a trailing block of axes is a layer norm
    sub = sole_consumer(graph, consumers, mean.outputs[0])
    if not is_op(sub, "Sub") or sub.inputs != (x, mean.outputs[0]):
        return None
    d = sub.outputs[0]
    uses = consumers.get(d, [])
    if len(uses) != 2 or d in graph.outputs:
        return None
    square = next((u for u in uses if (is_op(u, "Pow") and u.inputs[0] == d and scalar(graph, u.inputs[1]) == 2.0)
                   or (is_op(u, "Mul") and u.inputs == (d, d))), None)
    div = next((u for u in uses if u is not square), None)
    if square is None:
        return None
    var = sole_consumer(graph, consumers, square.outputs[0])
    if _reduce_axes(var, graph) != axes:
        return None
    add_eps = sole_consumer(graph, consumers, var.outputs[0])
    eps = scalar(graph, other_input(add_eps, var.outputs[0]) or "") if is_op(add_eps, "Add") else None
    if eps is None or eps < 0:
        return None
    sqrt = sole_consumer(graph, consumers, add_eps.outputs[0])
    if not is_op(sqrt, "Sqrt"):
        return None
    nodes = [mean, sub, square, var, add_eps, sqrt]
    after_sqrt = sole_consumer(graph, consumers, sqrt.outputs[0])
    if is_op(div, "Div") and div.inputs == (d, sqrt.outputs[0]) and after_sqrt is div:
        nodes.append(div)
    elif is_op(after_sqrt, "Reciprocal") and is_op(div, "Mul") and \
            other_input(div, d) == after_sqrt.outputs[0] and sole_consumer(graph, consumers, after_sqrt.outputs[0]) is div:
        nodes += [after_sqrt, div]  # d * (1 / sqrt(...))
    else:
        return None
    norm_shape = tuple(shape[axes[0]:])
    out = div.outputs[0]
    params: dict[str, str | None] = {"Mul": None, "Add": None}
    for op in ("Mul", "Add"):  # the affine part: * gamma, then + beta (each optional)
        nxt = sole_consumer(graph, consumers, out)
        param = other_input(nxt, out) if is_op(nxt, op) else None
        if param is None or param not in graph.constants or graph.dtypes.get(param) != np.float32:
            continue
        c = np.asarray(graph.constants[param])
        if c.ndim > len(norm_shape) or np.broadcast_shapes(c.shape, norm_shape) != norm_shape:
            continue  # varies along a non-normalised axis: not a layer norm's affine part
        params[op] = param
        nodes.append(nxt)
        out = nxt.outputs[0]
    return {"x": x, "out": out, "axis": axes[0], "eps": eps, "gamma": params["Mul"], "beta": params["Add"],
            "norm_shape": norm_shape}, nodes


def fuse_layernorm(graph: Graph) -> Graph:
    consumers = graph.consumers()
    constants, shapes, dtypes = dict(graph.constants), dict(graph.shapes), dict(graph.dtypes)

    def fuse(node: Node) -> tuple[Node, list[Node]] | None:
        found = _match(node, graph, consumers) if is_op(node, "ReduceMean") else None
        if found is None:
            return None
        f, nodes = found
        gamma = f["gamma"]
        if gamma is None:  # the op's scale input is required
            gamma = graph.fresh_name(node.name + "_ones")
            while gamma in constants:
                gamma += "_"
            constants[gamma] = np.ones(f["norm_shape"], np.float32)
            shapes[gamma], dtypes[gamma] = f["norm_shape"], np.dtype(np.float32)
        inputs = (f["x"], gamma) + ((f["beta"],) if f["beta"] else ())
        fused = Node("LayerNormalization", inputs, (f["out"],), {"axis": f["axis"], "epsilon": f["eps"]},
                     name=node.name + "_layernorm", domain="" if graph.opset >= 17 else DOMAIN)
        return fused, nodes

    return apply_matches(graph, fuse, constants=constants, shapes=shapes, dtypes=dtypes)
