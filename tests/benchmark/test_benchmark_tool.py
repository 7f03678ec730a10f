"""benchmark / compare: plausibility of the measured numbers on tiny models (no timed asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparseinfer.benchmark.compare import output_diff
from sparseinfer.benchmark.measure import LocalEngine, measure_sync, peak_rss_mib, split_cores, summarize, time_slice
from sparseinfer.benchmark.runners import PEERS, Peer, expand_engines, make_runner, split_installed

SRC = str(Path(__file__).resolve().parents[2] / "src")


def tiny_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                          "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def tiny_text_model() -> onnx.ModelProto:
    """input_ids, attention_mask (batch, sequence) int64 -> masked embeddings (batch, sequence, 8)."""
    emb = numpy_helper.from_array(np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32), "emb")
    axes = numpy_helper.from_array(np.array([2], np.int64), "axes")
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
             helper.make_node("Mul", ["e", "m3"], ["y"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
           for n in ("input_ids", "attention_mask")]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 8])
    g = helper.make_graph(nodes, "text", ins, [out], [emb, axes])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def run_cli(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``sparseinfer ARGS`` in a child process (zoo models from the session's shared cache,
    see tests/conftest.py; ``tmp_path`` is its working directory; ``env`` added to ours)."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "sparseinfer", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)


def test_summarize_relations():
    r = summarize("e", "sync", 4, 1, 2, [0.001, 0.002, 0.003, 0.010], wall_s=0.016, cpu_s=0.02)
    assert r.items_per_s == pytest.approx(4 / (r.mean_ms / 1e3))
    assert r.min_ms <= r.median_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
    assert r.cpu_percent == pytest.approx(125.0) and r.iterations == 4 and r.items == 16
    a = summarize("e", "async", 4, 2, 2, [0.001] * 10, wall_s=0.5, cpu_s=0.5)
    assert a.items_per_s == pytest.approx(40 / 0.5)
    with pytest.raises(RuntimeError, match="no request completed"):
        summarize("e", "sync", 1, 1, 1, [], 1.0, 0.0)


def test_split_cores_and_engine_names():
    assert split_cores(4, 2) == [2, 2] and split_cores(3, 2) == [2, 1] and split_cores(1, 3) == [1, 1, 1]
    with pytest.raises(ValueError):
        split_cores(2, 0)
    assert expand_engines("sparseinfer,openvino") == ["sparseinfer", "openvino-f32", "openvino-default"]
    with pytest.raises(ValueError, match="unknown engine.*available: sparseinfer"):
        expand_engines("sparseinfer,nope")


def test_missing_peer_message_says_how_to_install(monkeypatch):
    monkeypatch.setitem(PEERS, "nope", Peer("nope", PEERS["onnxruntime"].factory, "no_such_module_1234", "nope-rt"))
    ok, skipped = split_installed(["onnxruntime", "nope"])
    assert ok == ["onnxruntime"] and skipped == [
        "engine 'nope' skipped: no_such_module_1234 is not installed (pip install nope-rt)"]
    with pytest.raises(ImportError, match=r"pip install nope-rt"):
        make_runner("nope", tiny_model(), 1, 1)


def test_output_diff():
    ref = [np.array([1.0, -2.0, 4.0])]
    assert output_diff([np.array([1.0, -2.0, 4.0])], ref) == (0.0, 0.0)
    abs_d, rel = output_diff([np.array([1.0, -2.5, 4.0])], ref)
    assert abs_d == pytest.approx(0.5) and rel == pytest.approx(0.125)


def test_time_slice_counts_every_request():
    calls = []
    s = time_slice(lambda feeds: calls.append(feeds), {"x": 1}, seconds=0.0, min_iters=5)
    assert len(calls) == 5 and len(s.latencies_s) == 5 and all(t >= 0 for t in s.latencies_s)
    assert s.wall_s >= sum(s.latencies_s) and s.cpu_s >= 0 and s.peak_rss_mib > 0


def test_peak_rss_is_the_process_own_not_its_parents():
    big = np.ones(400 * 2**20 // 8)  # 400 MiB resident in this process
    assert peak_rss_mib() >= 400
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.run([sys.executable, "-c", "from sparseinfer.benchmark.measure import peak_rss_mib; "
                            "print(peak_rss_mib())"], capture_output=True, text=True, env=env, check=True)
    del big
    assert 10 < float(child.stdout) < peak_rss_mib() - 300  # ru_maxrss would report ours


@pytest.mark.parametrize("engine", ["sparseinfer", "onnxruntime"])
def test_sync_and_async_plausible(engine):
    model = tiny_model()
    feeds = {"x": np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)}
    sync = measure_sync({engine: LocalEngine(engine, model, feeds, 4, 2)}, 4, 2, warmup_s=0.05, time_s=0.3,
                        rounds=2)[engine]
    assert sync.iterations >= 6 and sync.items_per_s == pytest.approx(4 / (sync.mean_ms / 1e3))
    assert sync.p99_ms >= sync.median_ms > 0 and 0 <= sync.cpu_percent <= 100 * 2 * 1.05
    assert sync.peak_rss_mib > 10 and len(sync.round_medians_ms) == 2
    # The machine state before each round: a cross-core round trip on two cores (-1 with one CPU).
    assert len(sync.round_cross_core_ns) == 2
    assert all(x > 0 if len(os.sched_getaffinity(0)) > 1 else x == -1 for x in sync.round_cross_core_ns)
    one = measure_sync({engine: LocalEngine(engine, model, feeds, 4, 1)}, 4, 1, warmup_s=0.05, time_s=0.1,
                       rounds=2)[engine]
    assert one.round_cross_core_ns == []  # one core: nothing crosses
    local = LocalEngine(engine, model, feeds, 4, 2, streams=2)
    assert len(local.runners) == 2
    asy = local.run_async(warmup_s=0.05, time_s=0.3)
    assert asy.num_streams == 2 and asy.iterations > 0 and asy.items == asy.iterations * 4
    assert asy.items_per_s == pytest.approx(asy.items / asy.wall_s)
    assert asy.p99_ms >= asy.median_ms > 0 and 0 <= asy.cpu_percent <= 100 * os.cpu_count() * 1.05


def test_cli_async_json_and_missing_peer(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    out = tmp_path / "b.json"
    res = run_cli("benchmark", str(path), "--scenario", "async", "--num-streams", "2", "--batch-size", "2",
                  "--time", "0.3", "--warmup-time", "0.05", "--engine", "sparseinfer,onnxruntime",
                  "--export-json", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["scenario"] == "async" and set(doc["results"]) == {"sparseinfer", "onnxruntime"}
    for r in doc["results"].values():
        assert r["num_streams"] == 2 and r["p99_ms"] >= r["median_ms"] and r["iterations"] > 0
        assert 0 <= r["cpu_percent"] <= 100 * os.cpu_count() * 1.05 and r["peak_rss_mib"] > 0


def test_cli_compare_reports(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    res = run_cli("compare", str(path), "--engines", "sparseinfer,onnxruntime", "--time", "0.4",
                  "--warmup-time", "0.05", "--rounds", "2", "--output-dir", str(tmp_path / "rep"), "--no-progress",
                  tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    for ext in ("md", "csv", "json", "png"):
        assert (tmp_path / "rep" / f"compare.{ext}").stat().st_size > 0
    assert (tmp_path / "rep" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "rep" / "compare.json").read_text())
    rows = {r["engine"]: r for r in doc["rows"]}
    assert doc["reference_engine"] == "onnxruntime" and rows["onnxruntime"]["speedup"] == pytest.approx(1.0)
    assert rows["sparseinfer"]["max_abs_diff"] < 1e-3 and rows["onnxruntime"]["max_abs_diff"] == 0.0
    for r in rows.values():
        assert r["items_per_s"] == pytest.approx(1 / (r["mean_ms"] / 1e3)) and len(r["round_medians_ms"]) == 2
        assert r["peak_rss_mib"] > 10 and r["p99_ms"] >= r["median_ms"]
    assert "| sparseinfer |" in res.stdout and "max abs diff" in res.stdout


@pytest.mark.parametrize("cmd", ["benchmark", "compare"])
def test_cli_bad_model_is_a_clean_error(cmd, tmp_path):
    res = run_cli(cmd, "/nonexistent/model.onnx", "--time", "0.1", tmp_path=tmp_path)
    assert res.returncode != 0 and "/nonexistent/model.onnx" in res.stderr and "Traceback" not in res.stderr


def test_torch_peer_matches_onnxruntime_on_zoo_mlp6():
    pytest.importorskip("torch")
    from sparseinfer.benchmark.inputs import feeds_for, load_model

    model, _ = load_model("zoo:mlp6")
    feeds = feeds_for(model, 3)
    ref = make_runner("onnxruntime", model, 3, 1)(feeds)[0]
    got = make_runner("torch", model, 3, 1, "zoo:mlp6")(feeds)[0]
    assert output_diff([got], [ref])[0] < 1e-5
    with pytest.raises(ValueError, match="needs a zoo:NAME stub"):
        make_runner("torch", model, 3, 1, "/some/model.onnx")


@pytest.mark.parametrize("engine", ["tensorflow", "jax"])
def test_tensorflow_jax_peers_match_onnxruntime_on_zoo_mlp6(engine):
    """The zoo's six-layer classifier rebuilt in TensorFlow / JAX from the exported weights gives
    ONNX Runtime's outputs (the same check as the torch peer's)."""
    pytest.importorskip("torch", reason="exporting zoo:mlp6 needs torch")
    if not PEERS[engine].installed():
        pytest.skip(f"{engine} is not installed (pip install {PEERS[engine].pip})")
    from sparseinfer.benchmark.inputs import feeds_for, load_model
    from sparseinfer.benchmark.worker import Worker, open_engine

    model, path = load_model("zoo:mlp6")
    feeds = feeds_for(model, 5, seed=3)
    ref = make_runner("onnxruntime", model, 5, 1)(feeds)
    out = make_runner(engine, model, 5, 1)(feeds)
    assert len(out) == 1 and out[0].shape == ref[0].shape == (5, 1)
    assert output_diff(out, ref)[0] < 1e-5
    if engine == "tensorflow":  # its thread count is fixed once per process
        with pytest.raises(ValueError, match="already runs with 1 threads.*cannot change to 2"):
            make_runner(engine, model, 5, 2)
    with open_engine(engine, model, path, feeds, 5, 2, source="zoo:mlp6") as other:  # so the tool builds it anew
        assert isinstance(other, Worker) and output_diff(other.outputs(), ref)[0] < 1e-5


@pytest.mark.parametrize("engine", ["tensorflow", "jax"])
def test_tensorflow_jax_reject_models_they_do_not_define(engine, monkeypatch):
    conv = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
        [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")]))
    monkeypatch.setattr(Peer, "require", lambda self: None)  # the check precedes any import
    with pytest.raises(ValueError, match="plain MLPs.*Conv"):
        make_runner(engine, conv, 1, 1)


def test_missing_tensorflow_jax_say_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorflow", "jax")
                        else real(name, *a))
    with pytest.raises(ImportError, match="pip install tensorflow-cpu"):
        make_runner("tensorflow", tiny_model(), 1, 1)
    with pytest.raises(ImportError, match=r"pip install 'jax\[cpu\]'"):
        make_runner("jax", tiny_model(), 1, 1)


def test_input_shapes_set_the_sequence_and_batch_size_sets_the_batch():
    from sparseinfer.benchmark.inputs import feeds_for

    model = tiny_text_model()
    for shapes in ("input_ids:1x12,attention_mask:1x12", "1x12,1x12", "7x12,7x12"):
        feeds = feeds_for(model, 3, shapes)
        assert {k: v.shape for k, v in feeds.items()} == {"input_ids": (3, 12), "attention_mask": (3, 12)}
    with pytest.raises(ValueError, match=r"symbolic dimension 'sequence'.*on the command line: --input-shapes"):
        feeds_for(model, 1)


@pytest.mark.parametrize("engine", ["sparseinfer", "onnxruntime"])
def test_runners_are_built_for_the_input_shapes(engine):
    from sparseinfer.benchmark.inputs import feeds_for

    model = tiny_text_model()
    feeds = feeds_for(model, 2, "input_ids:2x12,attention_mask:2x12")
    feeds["attention_mask"][1, 5:] = 0
    table = numpy_helper.to_array(model.graph.initializer[0])
    want = table[feeds["input_ids"]] * feeds["attention_mask"][..., None]
    np.testing.assert_allclose(LocalEngine(engine, model, feeds, 2, 1)(feeds)[0], want, rtol=1e-6)


@pytest.mark.parametrize("cmd", ["benchmark", "compare"])
def test_cli_honours_input_shapes_for_text_models(cmd, tmp_path):
    path = tmp_path / "text.onnx"
    onnx.save(tiny_text_model(), path)
    common = ["--engines", "sparseinfer,onnxruntime", "--time", "0.2", "--warmup-time", "0.05", "--rounds", "1",
              "--batch-size", "2", "--input-shapes", "input_ids:1x12,attention_mask:1x12", "--no-progress"]
    if cmd == "benchmark":
        res = run_cli(cmd, str(path), *common, "--export-json", str(tmp_path / "b.json"), tmp_path=tmp_path)
        assert res.returncode == 0, res.stderr
        doc = json.loads((tmp_path / "b.json").read_text())
        assert doc["batch_size"] == 2 and set(doc["results"]) == {"sparseinfer", "onnxruntime"}
    else:
        res = run_cli(cmd, str(path), *common, "--output-dir", str(tmp_path / "rep"), tmp_path=tmp_path)
        assert res.returncode == 0, res.stderr
        rows = {r["engine"]: r for r in json.loads((tmp_path / "rep" / "compare.json").read_text())["rows"]}
        assert rows["sparseinfer"]["max_abs_diff"] < 1e-6
