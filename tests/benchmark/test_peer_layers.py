"""Reading DeepSparse's debug analysis and lining our profile up with it (peer_layers)."""

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparseinfer.benchmark.peer_layers import compare_rows, layers_of_rows, parse_debug_analysis, run_debug_analysis

# The shape of deepsparse 1.8's report (columns abridged to the ones read, rows from a real run).
REPORT = """Analyzing model: model.onnx
DeepSparse, Copyright 2021-present / Neuralmagic, Inc. version: 1.8.0 COMMUNITY
Name                        | OutDims              | KerDims              | ActSpars | Time(ms) | Canonical Name
Naive Subgraph 0            | [-1, -1, -1, -1, -1] | []                   |   0.0000 |   0.0250 | <none>
pyramid_0                   | [8, 4, 1, 6, 6]      | []                   |   0.2628 |  16.0000 | bn_out,pool_out
ks_convolution-89.9%_1      | [8, 4, 1, 6, 6]      | [4, 4, 1, 3, 3]      |   0.4577 |   8.0000 | relu2_out
shuffle_2                   | [8, 4, 1, 1, 1]      | []                   |   0.0000 |   0.0800 | <none>
Naive Subgraph 1            | [-1, -1, -1, -1, -1] | []                   |   0.0000 |   0.0230 | <none>
Total Time(MS): 24.1
Items per second: 331.9
Batch Size: 8
Number of threads: 1

== Layer Breakdown ==
Name                           | Summed Time | Percent Taken
pyramid                        |   16.000    | 66.00%
== Summed Total Time: 24.1 ms
"""


def _model():
    """conv1 -> bn -> relu -> pool -> conv2 -> relu2 -> gap (values named as in REPORT)."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w2")
    bn = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("s", "b", "m", "v")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1_out"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1_out", "s", "b", "m", "v"], ["bn_out"], name="bn"),
        helper.make_node("Relu", ["bn_out"], ["relu_out"], name="relu"),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool_out", "w2"], ["c2_out"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2_out"], ["relu2_out"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2_out"], ["y"], name="gap"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 4, 1, 1])], [w, w2, *bn])
    return helper.make_model(graph)


def test_parse_reads_rows_values_and_batch():
    rows, batch = parse_debug_analysis(REPORT)
    assert batch == 8
    assert [r["name"] for r in rows] == ["pyramid_0", "ks_convolution-89.9%_1", "shuffle_2"]
    assert [r["kind"] for r in rows] == ["pyramid", "ks_convolution", "shuffle"]
    assert rows[0]["values"] == ["bn_out", "pool_out"] and rows[2]["values"] == []
    assert rows[1]["ms"] == 8.0 and rows[1]["kernel_dims"] == "[4, 4, 1, 3, 3]"


@pytest.mark.parametrize("text, what", [("Total Time(MS): 3\nBatch Size: 1\n", "no layer table"),
                                        (REPORT.replace("Batch Size: 8", ""), "Batch Size")])
def test_parse_rejects_a_report_without_table_or_batch(text, what):
    with pytest.raises(ValueError, match=what):
        parse_debug_analysis(text)


def test_rows_claim_the_nodes_back_to_their_layer_once():
    rows, _ = parse_debug_analysis(REPORT)
    layers = layers_of_rows(_model(), rows)
    # pool_out walks back to relu, whose bn the row's first value already claimed: it stops there
    assert layers == [["bn", "conv1", "pool", "relu"], ["relu2", "conv2"], []]


def test_compare_sums_our_rows_per_image_and_keeps_the_unmatched():
    rows, batch = parse_debug_analysis(REPORT)
    layers = layers_of_rows(_model(), rows)
    profile = [{"node": "conv1", "ms": 1.0}, {"node": "pool", "ms": 0.5}, {"node": "conv2", "ms": 2.0},
               {"node": "(layout reorder/copy)", "ms": 0.25}]
    doc = compare_rows(rows, layers, batch, profile, profile_per_image=True)
    first, conv, _ = doc["rows"]
    assert first["deepsparse_ms_per_image"] == 2.0 and first["sparseinfer_ms_per_image"] == 1.5
    assert first["speedup_vs_deepsparse"] == round(2.0 / 1.5, 3)
    assert conv["sparseinfer_ms_per_image"] == 2.0 and conv["speedup_vs_deepsparse"] == 0.5
    assert doc["unmatched_ms_per_image"] == {"(layout reorder/copy)": 0.25}
    assert doc["sparseinfer_total_ms_per_image"] == 3.75
    assert doc["by_kind"]["ks_convolution"]["deepsparse_ms_per_image"] == 1.0
    assert doc["by_kind"]["shuffle"]["speedup_vs_deepsparse"] is None  # nothing of ours in it
    # a profile of the whole batch is divided by it
    whole = compare_rows(rows, layers, batch, [{"node": "conv2", "ms": 16.0}], profile_per_image=False)
    assert whole["rows"][1]["sparseinfer_ms_per_image"] == 2.0


def test_a_failing_analysis_raises_with_its_output(tmp_path):
    # this Python has no deepsparse: the module cannot be found, and the error says so
    with pytest.raises(RuntimeError, match="deepsparse"):
        run_debug_analysis(sys.executable, str(tmp_path / "m.onnx"), 1, 1, timeout=120)
