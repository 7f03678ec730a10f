"""Engine API behaviour: inputs, shapes, recompilation, reports, and every kind of bad input."""

import numpy as np
import pytest
from onnx import helper

import sparseinfer
from sparseinfer import InputError, ModelLoadError
from sparseinfer.compiler.memory import Interval, plan_arena

from .conftest import f32, make_model, ort_run


@pytest.fixture
def two_input_model(rng):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    return make_model([helper.make_node("MatMul", ["a", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["s"]),
                       helper.make_node("Relu", ["s"], ["y"])],
                      [f32("a", ["N", 3]), f32("b", ["N", 4])], [f32("y", ["N", 4])], {"w": w})


def test_run_named_call_and_repr(two_input_model, rng):
    engine = sparseinfer.compile_model(two_input_model, batch_size=2, num_cores=1)
    assert engine.input_names == ["a", "b"] and engine.output_names == ["y"]
    assert engine.input_shapes == [(2, 3), (2, 4)]
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    want = ort_run(two_input_model, {"a": a, "b": b})[0]
    np.testing.assert_allclose(engine.run([a, b])[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(engine(a=a, b=b)[0], want, rtol=1e-5, atol=1e-5)
    text = repr(engine)
    for part in ("batch_size=2", "num_cores=1", "isa=", "native_ops="):
        assert part in text
    assert all(r.kernels for r in engine.node_report)


def test_other_batch_size_recompiles_and_stays_correct(two_input_model, rng):
    engine = sparseinfer.compile_model(two_input_model, batch_size=1)
    for n in (1, 7, 3, 7):
        a, b = rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((n, 4)).astype(np.float32)
        np.testing.assert_allclose(engine.run([a, b])[0], ort_run(two_input_model, {"a": a, "b": b})[0],
                                   rtol=1e-5, atol=1e-5)
    assert len(engine._compiled) == 3


def test_non_contiguous_inputs_are_accepted(two_input_model, rng):
    engine = sparseinfer.compile_model(two_input_model, batch_size=2)
    a = rng.standard_normal((3, 2)).astype(np.float32).T  # Fortran-ordered view
    b = rng.standard_normal((2, 8)).astype(np.float32)[:, ::2]
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    np.testing.assert_allclose(engine.run([a, b])[0], ort_run(two_input_model, {"a": np.ascontiguousarray(a),
                                                                               "b": np.ascontiguousarray(b)})[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (lambda a, b: [a], "expected 2 inputs"),
    (lambda a, b: [a, b, b], "expected 2 inputs"),
    (lambda a, b: [a.astype(np.float64), b], "dtype float64, expected float32"),
    (lambda a, b: [a[None], b], "expected rank 2"),
    (lambda a, b: [a, np.zeros((2, 5), np.float32)], "fixes dimension 1 to 4"),
    (lambda a, b: {"a": a}, "expects a list of arrays"),
])
def test_bad_inputs_raise_clear_errors(two_input_model, rng, bad, message):
    engine = sparseinfer.compile_model(two_input_model, batch_size=2)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    with pytest.raises(InputError, match=message):
        engine.run(bad(a, b))


def test_named_call_with_wrong_names(two_input_model):
    engine = sparseinfer.compile_model(two_input_model)
    with pytest.raises(InputError, match=r"missing \['b'\], unexpected \['c'\]"):
        engine(a=np.zeros((1, 3), np.float32), c=np.zeros((1, 4), np.float32))


def test_bad_model_files(tmp_path, two_input_model):
    with pytest.raises(ModelLoadError, match="not found"):
        sparseinfer.compile_model(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError, match="is a directory"):
        sparseinfer.compile_model(tmp_path)
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model at all\n" * 10)
    with pytest.raises(ModelLoadError, match="not an ONNX model|not a valid ONNX model"):
        sparseinfer.compile_model(text)
    data = two_input_model.SerializeToString()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        sparseinfer.compile_model(truncated)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        sparseinfer.compile_model(empty)
    with pytest.raises(ModelLoadError, match="cannot load a model from int"):
        sparseinfer.compile_model(42)


def test_bad_compile_arguments(two_input_model):
    with pytest.raises(ValueError, match="batch_size"):
        sparseinfer.compile_model(two_input_model, batch_size=0)
    with pytest.raises(ValueError, match="num_cores"):
        sparseinfer.compile_model(two_input_model, num_cores=0)
    with pytest.raises(ModelLoadError, match="unknown inputs"):
        sparseinfer.compile_model(two_input_model, input_shapes={"nope": [1, 3]})


def test_symbolic_non_batch_dim_needs_input_shapes(rng):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [f32("x", ["N", "S"])], [f32("y", ["N", "S"])])
    with pytest.raises(ModelLoadError, match="symbolic dimension 'S' at axis 1"):
        sparseinfer.compile_model(model)
    engine = sparseinfer.compile_model(model, input_shapes={"x": [2, 5]})
    x = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_array_equal(engine.run([x])[0], np.maximum(x, 0))


def test_unsupported_ops_fall_back_with_a_warning_naming_them(caplog, rng):
    model = make_model([helper.make_node("Sin", ["x"], ["e"]), helper.make_node("Relu", ["e"], ["y"])],
                       [f32("x", [2, 3])], [f32("y", [2, 3])])
    with caplog.at_level("WARNING", logger="sparseinfer"):
        engine = sparseinfer.compile_model(model)
    assert "Sin" in caplog.text
    assert [r.native for r in engine.node_report] == [False, True]
    assert engine.fraction_of_native_ops == 0.5
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(engine.run([x])[0], ort_run(model, {"x": x})[0], rtol=1e-6)


@pytest.mark.parametrize("first", ["Sin", "Relu"])  # (Sin: an ONNX Runtime region before our plan)
def test_run_writes_into_given_arrays(first, rng):
    """CompiledGraph.run(out=...): what a stream filling a micro-batch calls (micro_batch.py);
    the outputs land in the caller's arrays, which are returned, and bad ones are refused with
    what was expected (by our plan or, after an ONNX Runtime region, by the Python side)."""
    model = make_model([helper.make_node(first, ["x"], ["e"]), helper.make_node("Relu", ["e"], ["y"])],
                       [f32("x", [2, 3])], [f32("y", [2, 3])])
    graph = sparseinfer.compile_model(model)._default
    x = rng.standard_normal((2, 3)).astype(np.float32)
    want = ort_run(model, {"x": x})[0]
    batch = np.full((3, 2, 3), np.nan, np.float32)
    into = batch[1]
    (got,) = graph.run([x], out=[into])
    assert got is into
    np.testing.assert_allclose(batch[1], want, rtol=1e-6)
    assert np.isnan(batch[0]).all() and np.isnan(batch[2]).all()
    bad = {"wrong size": np.empty((3, 3), np.float32), "wrong dtype": np.empty((2, 3), np.float64),
           "read-only": np.zeros((2, 3), np.float32)}
    bad["read-only"].setflags(write=False)
    for arr in bad.values():
        with pytest.raises(ValueError, match="elements|writable C-contiguous float32"):
            graph.run([x], out=[arr])
    with pytest.raises(ValueError, match="has 6 elements, its array 9"):
        graph.run([x], out=[bad["wrong size"]])
    with pytest.raises(ValueError, match="writable C-contiguous float32"):
        graph.run([x], out=[np.empty((3, 2), np.float32).T])
    with pytest.raises(ValueError, match="1 outputs, got 2 arrays"):
        graph.run([x], out=[batch[0], batch[2]])


def test_arena_planner_never_overlaps_live_tensors():
    rng = np.random.default_rng(1)
    ivs = []
    for k in range(60):
        s = int(rng.integers(0, 40))
        ivs.append(Interval(f"t{k}", int(rng.integers(1, 5000)), s, s + int(rng.integers(0, 6))))
    offsets, total = plan_arena(ivs)
    for i, a in enumerate(ivs):
        assert offsets[a.name] % 16 == 0 and offsets[a.name] + a.size <= total
        for b in ivs[i + 1:]:
            live_together = not (a.end < b.start or b.end < a.start)
            apart = offsets[a.name] + a.size <= offsets[b.name] or offsets[b.name] + b.size <= offsets[a.name]
            assert apart or not live_together
    assert total < sum(iv.size + 16 for iv in ivs)  # sharing actually happened


def test_arena_pools_share_memory_only_within_a_pool_or_across_time():
    rng = np.random.default_rng(2)
    ivs = []
    for k in range(80):
        s = int(rng.integers(0, 40))
        ivs.append(Interval(f"t{k}", int(rng.integers(1, 3000)), s, s + int(rng.integers(0, 6)), pool=k % 3))
    offsets, total = plan_arena(ivs)
    span = {p: (min(i.start for i in ivs if i.pool == p), max(i.end for i in ivs if i.pool == p)) for p in range(3)}
    shared_within = False
    for i, a in enumerate(ivs):
        assert offsets[a.name] % 16 == 0 and offsets[a.name] + a.size <= total
        for b in ivs[i + 1:]:
            overlap = not (offsets[a.name] + a.size <= offsets[b.name] or offsets[b.name] + b.size <= offsets[a.name])
            if not overlap:
                continue
            assert a.end < b.start or b.end < a.start  # never two live tensors in one place
            if a.pool != b.pool:  # other pools' memory only once that whole pool is dead
                (s0, e0), (s1, e1) = span[a.pool], span[b.pool]
                assert e0 < s1 or e1 < s0
            else:
                shared_within = True
    assert shared_within
    # Pools that live at different times reuse one region.
    early = [Interval(f"e{k}", 1000, k, k + 1, pool="early") for k in range(0, 10, 2)]
    late = [Interval(f"l{k}", 1000, k, k + 1, pool="late") for k in range(20, 30, 2)]
    offsets, total = plan_arena(early + late)
    assert total == 1008 and offsets["e0"] == offsets["l20"] == 0


_MEMORY_PROBE = r"""
import json, sys
import numpy as np
import onnx, onnxruntime  # the libraries' own memory is in the baseline
import sparseinfer

from sparseinfer.benchmark.measure import peak_rss_mib

def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS"))

base = rss_mib()
engine = sparseinfer.compile_model(sys.argv[1], batch_size=int(sys.argv[2]), num_cores=1)
y1 = engine.run([np.ones((int(sys.argv[2]), 2048), np.float32)])[0]
steady = rss_mib()
peak = peak_rss_mib()
y3 = engine.run([np.ones((3, 2048), np.float32)])[0]  # another batch: compiles again from the file
print(json.dumps({"base": base, "peak": peak, "steady": steady, "same": bool(np.array_equal(y1[0], y3[0])),
                  "peak_after_recompile": peak_rss_mib()}))
"""


def test_weights_are_held_once_and_the_peak_stays_near_two_copies(tmp_path, rng):
    """A model read from a file: after compiling only the packed weights stay in memory (not
    also the ONNX tensors and the IR's arrays), and compiling peaks near two copies of the
    weights, as ONNX Runtime does (before: five copies, from copies made by shape inference,
    the checker and a Gemm fusion)."""
    import json
    import subprocess
    import sys

    import onnx

    w = rng.standard_normal((2048, 8192)).astype(np.float32)  # 64 MiB, transposed by the Gemm (transB)
    model = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
                       [f32("x", ["N", 2048])], [f32("y", ["N", 8192])], {"w": w.T.copy()})
    path = tmp_path / "gemm.onnx"
    onnx.save(model, str(path))
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), "2"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    weights_mib = w.nbytes / 2**20
    assert m["same"], "the batch-3 recompile (from the file) must compute the same rows"
    assert m["steady"] - m["base"] < 1.5 * weights_mib, m
    assert m["peak"] - m["base"] < 2.6 * weights_mib, m


def test_profile_times_every_op_inside_whole_runs(two_input_model, rng):
    engine = sparseinfer.compile_model(two_input_model, batch_size=4, num_cores=1)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    rows = engine._default.profile([a, b], repeats=3)
    steps = [st for seg in engine._default.segments for st in getattr(seg, "steps", [])]
    assert len(rows) == len(steps) > 0
    assert all(r["native"] and r["ms"] > 0 and r["kernel"] for r in rows)
    # profiling re-runs the ops on the bound slots: the engine's results are unchanged
    np.testing.assert_allclose(engine.run([a, b])[0], ort_run(two_input_model, {"a": a, "b": b})[0],
                               rtol=1e-5, atol=1e-5)
