"""A batch as single-image streams (compiler/micro_batch.py): only when the model computes every
image independently, and then with the same outputs as ONNX Runtime on the whole batch."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

import sparseinfer
from sparseinfer.compiler import micro_batch
from sparseinfer.compiler.micro_batch import StreamedBatch, batch_separable
from sparseinfer.graph import import_onnx

from .conftest import f32, make_model, ort_run


def _cnn(rng, sparsity=0.0):
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: every image on its own."""
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    if sparsity:
        w[rng.random(w.shape) < sparsity] = 0.0
    fc = rng.standard_normal((5, 16)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    return make_model(nodes, [f32("x", ["N", 8, 12, 12])], [f32("y", ["N", 5])], {"w": w, "fc": fc})


def _mixing(op_nodes, out_shape, inits=()):
    """x (N, 4, 6) through `op_nodes` (reading "x", writing "y")."""
    return make_model(op_nodes, [f32("x", ["N", 4, 6])], [f32("y", out_shape)], dict(inits))


MIXING = {
    "ReduceMean over the batch": ([helper.make_node("ReduceMean", ["x"], ["y"], axes=[0], keepdims=1)], [1, 4, 6], {}),
    "Softmax along the batch": ([helper.make_node("Softmax", ["x"], ["y"], axis=0)], ["N", 4, 6], {}),
    "Reshape folding the batch": ([helper.make_node("Reshape", ["x", "s"], ["y"])], [None, 6],
                                  {"s": np.array([-1, 6], np.int64)}),
    "Transpose moving the batch": ([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2])], [4, "N", 6], {}),
    "Concat along the batch": ([helper.make_node("Concat", ["x", "x"], ["y"], axis=0)], [None, 4, 6], {}),
    "CumSum along the batch": ([helper.make_node("CumSum", ["x", "a"], ["y"])], ["N", 4, 6],
                               {"a": np.array(0, np.int64)}),
}


def _separable(model, n):
    return batch_separable(import_onnx(model, {"x": (1,) + tuple(d.dim_value or 0 for d in
                                                                    model.graph.input[0].type.tensor_type.shape.dim[1:])}),
                           import_onnx(model, {"x": (n,) + tuple(d.dim_value or 0 for d in
                                                                    model.graph.input[0].type.tensor_type.shape.dim[1:])}),
                           n)


def test_independent_images_are_separable(rng):
    assert _separable(_cnn(rng), 5) is None


@pytest.mark.parametrize("name", sorted(MIXING))
def test_ops_that_mix_images_are_not_separable_and_run_as_one_batch(name, rng, monkeypatch):
    nodes, out_shape, inits = MIXING[name]
    model = _mixing(nodes, out_shape, inits)
    reason = _separable(model, 3)
    assert reason is not None and ("batch" in reason or "shape" in reason), reason
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")  # even forced, an inexact split is refused
    engine = sparseinfer.compile_model(model, batch_size=3, num_cores=2)
    assert not isinstance(engine._default, StreamedBatch)
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_forced_streams_equal_onnxruntime(n, rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    model = _cnn(rng)
    engine = sparseinfer.compile_model(model, batch_size=n, num_cores=2)
    assert isinstance(engine._default, StreamedBatch)
    assert "streams" in engine.batching
    # The classifier (Gemm on the flattened features) runs once on the whole batch.
    assert engine._default.tail is not None and "classifier head as one batched plan (from 'f')" in engine.batching
    assert [r.op for r in engine._default.tail.report] == ["FusedGemm"]
    assert engine.output_shapes == [(n, 5)]
    x = rng.standard_normal((n, 8, 12, 12)).astype(np.float32)
    for _ in range(2):  # a second run reuses the plans' arenas
        np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


_PINNED_STREAMS = """
import json, os, sys, numpy as np, onnx, sparseinfer
model = onnx.load(sys.argv[1])
x = np.random.default_rng(0).standard_normal((4, 8, 12, 12)).astype(np.float32)
engine = sparseinfer.compile_model(model, batch_size=4, num_cores=2, pin_threads=True)
y = engine.run([x])[0]
sb = engine._default
bound = [sorted(ex.submit(os.sched_getaffinity, 0).result()) for ex in sb._executor]
ref = sparseinfer.compile_model(model, batch_size=4, num_cores=2).run([x])[0]
print(json.dumps({"cpus": sb.stream_cpus, "bound": bound, "diff": float(np.abs(y - ref).max())}))
"""


def _run_on_cnn(script: str, rng, tmp_path) -> dict:
    """Runs `script` in a fresh process (thread pinning is process state) on the _cnn model saved
    to a file (argv[1]), streams forced; returns the JSON it printed last."""
    path = tmp_path / "cnn.onnx"
    onnx.save(_cnn(rng), path)
    env = dict(os.environ, SPARSEINFER_BATCHING="streams")
    out = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_pinned_streams_run_on_cpus_of_their_own(rng, tmp_path):
    """With pinned threads each stream's thread is bound to a CPU of its own (before, every
    single-thread stream plan bound its caller to the first CPU: half the throughput). In a
    subprocess: pinned threads stay bound until the process ends."""
    res = _run_on_cnn(_PINNED_STREAMS, rng, tmp_path)
    assert len(set(res["cpus"])) == 2 and res["bound"] == [[c] for c in res["cpus"]]
    assert res["diff"] == 0.0


_PINNED_THEN_UNPINNED = """
import json, os, sys, numpy as np, onnx, sparseinfer
model = onnx.load(sys.argv[1])
before = sorted(os.sched_getaffinity(0))
x1 = np.random.default_rng(0).standard_normal((1, 8, 12, 12)).astype(np.float32)
pinned = sparseinfer.compile_model(model, batch_size=1, num_cores=2, pin_threads=True)
y1 = pinned.run([x1])[0]
after_pinned = sorted(os.sched_getaffinity(0))
x4 = np.random.default_rng(1).standard_normal((4, 8, 12, 12)).astype(np.float32)
free = sparseinfer.compile_model(model, batch_size=4, num_cores=2)
free.run([x4])  # (starts its second stream's thread)
stream = sorted(free._default._executor.submit(os.sched_getaffinity, 0).result())
diff = float(np.abs(y1 - free.run([np.repeat(x1, 4, axis=0)])[0][:1]).max())
print(json.dumps({"before": before, "after_pinned": after_pinned, "stream": stream, "diff": diff}))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_pinned_engine_leaves_the_callers_affinity_alone(rng, tmp_path):
    """A pinned engine binds the calling thread (its pool's thread 0) only while it runs: before,
    the binding outlived the run, and an unpinned engine compiled next on that thread started its
    second stream there too, both streams on one CPU (half the throughput)."""
    res = _run_on_cnn(_PINNED_THEN_UNPINNED, rng, tmp_path)
    assert res["after_pinned"] == res["before"] and res["stream"] == res["before"], res
    assert res["diff"] < 1e-5


def test_forced_batched_runs_one_plan(rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "batched")
    engine = sparseinfer.compile_model(_cnn(rng), batch_size=4, num_cores=2)
    assert not isinstance(engine._default, StreamedBatch) and engine.batching == "one plan"


def test_auto_dense_conv_net_is_decided_by_measurement(rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "auto")
    monkeypatch.setenv("SPARSEINFER_KERNELS", "dense")
    model = _cnn(rng)
    engine = sparseinfer.compile_model(model, batch_size=4, num_cores=2)
    assert "measured" in engine.batching, engine.batching
    x = rng.standard_normal((4, 8, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_auto_dense_mlp_keeps_one_plan(rng, monkeypatch):
    """Each weight of a Gemm is used once per row: the batch is what reuses it."""
    monkeypatch.setenv(micro_batch.ENV_VAR, "auto")
    w = rng.standard_normal((16, 8)).astype(np.float32)
    model = make_model([helper.make_node("Gemm", ["x", "w"], ["y"])], [f32("x", ["N", 16])], [f32("y", ["N", 8])],
                       {"w": w})
    engine = sparseinfer.compile_model(model, batch_size=8, num_cores=2)
    assert engine.batching == "one plan"
    assert micro_batch.weight_reuse(import_onnx(model, {"x": (1, 16)})) == 1.0
    assert micro_batch.weight_reuse(import_onnx(_cnn(rng), {"x": (1, 8, 12, 12)})) > 32


def test_auto_with_sparse_kernels_runs_streams(rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "auto")
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    model = _cnn(rng, sparsity=0.9)
    engine = sparseinfer.compile_model(model, batch_size=5, num_cores=2)
    assert isinstance(engine._default, StreamedBatch) and "sparse kernels" in engine.batching
    x = rng.standard_normal((5, 8, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_streams_share_one_copy_of_the_weights(rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    model = _cnn(rng)
    streamed = sparseinfer.compile_model(model, batch_size=4, num_cores=2)
    single = sparseinfer.compile_model(model, batch_size=1, num_cores=1)
    assert len(streamed._default.streams) == 2
    assert streamed.weight_bytes == single.weight_bytes > 0


def test_a_batch_smaller_than_the_cores_runs_as_one_plan(rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    engine = sparseinfer.compile_model(_cnn(rng), batch_size=2, num_cores=3)
    assert not isinstance(engine._default, StreamedBatch)


def test_bad_batching_mode_is_an_error(rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match="SPARSEINFER_BATCHING='sometimes': expected one of auto, streams, batched"):
        sparseinfer.compile_model(_cnn(rng), batch_size=2, num_cores=2)


def _imported(model, n):
    dims = tuple(d.dim_value or 0 for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
    return import_onnx(model, {"x": (n,) + dims})


def test_batched_tail_starts_where_the_rest_reads_one_value(rng, monkeypatch):
    """The classifier also reads the pooled features through a second path: the cut moves back
    to the last value everything after it comes from."""
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((16, 16)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Flatten", ["g"], ["h"]),
             helper.make_node("Gemm", ["f", "fc"], ["m"], transB=1),
             helper.make_node("Add", ["m", "h"], ["y"])]
    model = make_model(nodes, [f32("x", ["N", 8, 6, 6])], [f32("y", ["N", 16])], {"w": w, "fc": fc})
    g1 = _imported(model, 1)
    cut = micro_batch.batched_tail(g1)
    assert [n.op for n in g1.nodes[cut:]] == ["Flatten", "Flatten", "Gemm", "Add"]
    head, tail = micro_batch.section(g1, g1, 0, cut), micro_batch.section(g1, _imported(model, 4), cut, len(g1.nodes))
    assert head.outputs == ("g",) and tail.inputs == ("g",) and tail.shapes["g"] == (4, 16, 1, 1)
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    engine = sparseinfer.compile_model(model, batch_size=4, num_cores=2)
    x = rng.standard_normal((4, 8, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_no_batched_tail_without_a_classifier(rng):
    """Only layers whose weights each image reuses (convolutions): everything streams."""
    w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                        helper.make_node("Relu", ["c"], ["y"])],
                       [f32("x", ["N", 8, 6, 6])], [f32("y", ["N", 4, 6, 6])], {"w": w})
    assert micro_batch.batched_tail(_imported(model, 1)) is None


def test_profile_of_a_streamed_batch_covers_the_tail(rng, monkeypatch):
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    engine = sparseinfer.compile_model(_cnn(rng), batch_size=4, num_cores=2)
    x = rng.standard_normal((4, 8, 12, 12)).astype(np.float32)
    rows = engine._default.profile([x], repeats=2)
    assert rows[-1]["op"] == "FusedGemm" and all(r["ms"] >= 0 for r in rows)
    assert len(rows) == len(engine._default.streams[0].profile([x[:1]], 1)) + 1


def test_batched_tail_recomputes_values_derived_from_constants(rng, monkeypatch):
    """Exporters share equal weights through an Identity at the top of the graph: the tail reads
    that value too, and computes it itself rather than taking it from the streams."""
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((5, 16)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    nodes = [helper.make_node("Identity", ["b"], ["b_shared"]),
             helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "b_shared"], ["y"], transB=1)]
    model = make_model(nodes, [f32("x", ["N", 8, 6, 6])], [f32("y", ["N", 5])], {"w": w, "fc": fc, "b": b})
    g1 = _imported(model, 1)
    cut = micro_batch.batched_tail(g1)
    assert [n.op for n in g1.nodes[cut:]] == ["Gemm"]
    head, tail = micro_batch.section(g1, g1, 0, cut), micro_batch.section(g1, _imported(model, 3), cut, len(g1.nodes))
    assert [n.op for n in tail.nodes] == ["Identity", "Gemm"] and tail.inputs == ("f",)
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    engine = sparseinfer.compile_model(model, batch_size=3, num_cores=2)
    assert engine._default.tail is not None
    x = rng.standard_normal((3, 8, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def _shrinking_cnn(rng):
    """A 16x16 conv (256 positions per image), then a stride-2 conv and a conv at 8x8 (64: a
    deep stage), then a classifier."""
    w1 = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    w3 = rng.standard_normal((16, 16, 1, 1)).astype(np.float32)
    fc = rng.standard_normal((5, 16)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3"], ["c3"]),
             helper.make_node("Add", ["c3", "r2"], ["s"]),
             helper.make_node("GlobalAveragePool", ["s"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    return make_model(nodes, [f32("x", ["N", 4, 16, 16])], [f32("y", ["N", 5])],
                      {"w1": w1, "w2": w2, "w3": w3, "fc": fc})


def test_deep_stage_starts_after_the_last_large_map(rng):
    g1 = _imported(_shrinking_cnn(rng), 1)
    end = micro_batch.batched_tail(g1)
    assert [n.op for n in g1.nodes[end:]] == ["Gemm"]
    start, images = micro_batch.deep_stage(g1, end, share=100)
    # From the stride-2 conv's input on; 784 positions per run over 8x8 maps: 12 images.
    assert g1.nodes[start].op == "Conv" and g1.nodes[start].inputs[0] == "r1" and images == 12
    assert micro_batch.deep_stage(g1, end, share=3) == (start, 3)  # no more than a stream's images
    assert micro_batch.deep_stage(g1, end, share=1) is None
    deep = micro_batch.section(g1, _imported(_shrinking_cnn(rng), 3), start, end)
    assert deep.inputs == ("r1",) and deep.outputs == ("f",) and deep.shapes["r1"] == (3, 8, 16, 16)
    # Every layer on a large map (or no cut before the small ones): no deep stage.
    assert micro_batch.deep_stage(_imported(_cnn(rng), 1), 3, share=8) is None


@pytest.mark.parametrize("n", [7, 8])
def test_deep_stage_in_micro_batches_equals_onnxruntime(n, rng, monkeypatch):
    """Two streams of single images, then micro-batches of 4 from the 8x8 stage on (a stream's
    last one filled up when its share is not a multiple of 4), then the batched classifier."""
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    model = _shrinking_cnn(rng)
    engine = sparseinfer.compile_model(model, batch_size=n, num_cores=2)
    sb = engine._default
    assert isinstance(sb, StreamedBatch) and sb.deep is not None and sb.deep_images == 4
    assert "from 'r1' on 4 images at a time" in engine.batching and sb.tail is not None
    assert [r.op for r in sb.deep[0].report][:1] == ["FusedConv"]
    assert [r.op for r in sb.report] == ([r.op for r in sb.streams[0].report] + [r.op for r in sb.deep[0].report]
                                         + [r.op for r in sb.tail.report])
    assert sb.weight_bytes == sb.streams[0].weight_bytes + sb.deep[0].weight_bytes + sb.tail.weight_bytes
    x = rng.standard_normal((n, 4, 16, 16)).astype(np.float32)
    for _ in range(2):
        np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
    rows = sb.profile([x], repeats=2)
    profiled = [r["node"] for r in rows if r["op"] != "Reorder"]
    convs = [r.name for r in sb.report if r.op == "FusedConv"]
    assert len(convs) == 3 and set(convs) <= set(profiled) <= {r.name for r in sb.report}
    assert all(r["ms"] >= 0 for r in rows)


def test_deep_stage_without_a_classifier_returns_the_whole_batch(rng, monkeypatch):
    w1 = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
                        helper.make_node("Relu", ["c1"], ["r1"]),
                        helper.make_node("Conv", ["r1", "w2"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])],
                       [f32("x", ["N", 4, 16, 16])], [f32("y", ["N", 8, 8, 8])], {"w1": w1, "w2": w2})
    monkeypatch.setenv(micro_batch.ENV_VAR, "streams")
    engine = sparseinfer.compile_model(model, batch_size=5, num_cores=2)
    assert engine._default.deep is not None and engine._default.tail is None
    assert engine.output_shapes == [(5, 8, 8, 8)]
    x = rng.standard_normal((5, 4, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
