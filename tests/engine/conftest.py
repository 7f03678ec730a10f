import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    """A checked ONNX model from helper-made parts (IR version ORT accepts)."""
    graph = helper.make_graph(nodes, "test", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_run(model, feeds):
    """ONNX Runtime's outputs for the graph as written: its graph optimisations (layout and
    activation fusions) are off, because on some pruned zoo models they move the result by
    ~5e-4 (measured on mobilenet_v2-pruned95: optimised vs unoptimised ORT differ by 5.4e-4,
    while unoptimised ORT and both of our kernel paths agree within 7e-6)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def pruned(rng, shape, sparsity):
    """N(0, 1) float32 weights with round(sparsity * size) of the smallest magnitudes zeroed."""
    w = rng.standard_normal(shape).astype(np.float32)
    if sparsity >= 1.0:
        return np.zeros_like(w)
    k = int(round(sparsity * w.size))
    if k:
        idx = np.argsort(np.abs(w).ravel(), kind="stable")[:k]
        w.ravel()[idx] = 0
    return w


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
