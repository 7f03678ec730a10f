"""The study's named scenarios on a tiny model: plausibility of each workload's numbers."""

from __future__ import annotations

import json

import onnx
import pytest

from tests.benchmark.test_benchmark_tool import run_cli, tiny_model


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    return str(path)


def scenario(tmp_path, *args):
    out = tmp_path / "s.json"
    res = run_cli("scenario", *args, "--engines", "onnxruntime", "--time", "0.2", "--warmup-time", "0.05",
                  "--export-json", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text()), res


def test_large_batch_and_thread_sweep(tiny, tmp_path):
    doc, _ = scenario(tmp_path, "large-batch", tiny, "--max-batch", "64")
    assert [p["batch_size"] for p in doc["points"]] == [1, 8, 64]
    for p in doc["points"]:
        assert p["items_per_s"] == pytest.approx(p["batch_size"] / (p["mean_ms"] / 1e3))
        assert p["p99_ms"] >= p["median_ms"] and 0 <= p["cpu_percent"] <= 100 * doc["num_cores"] * 1.05
    doc, _ = scenario(tmp_path, "thread-sweep", tiny, "--num-cores", "2")
    assert [p["threads"] for p in doc["points"]] == [1, 2]


def test_multi_instance_splits_cores(tiny, tmp_path):
    doc, res = scenario(tmp_path, "multi-instance", tiny, "--num-cores", "2", "--batch-size", "2")
    assert [p["instances"] for p in doc["points"]] == [1, 2]
    assert doc["points"][1]["cores_per_instance"] == [1, 1]
    for p in doc["points"]:
        assert p["items_per_s"] > 0 and p["iterations"] > 0 and p["p99_ms"] >= p["median_ms"]


def test_latency_bound_search_and_impossible_bound(tiny, tmp_path):
    doc, _ = scenario(tmp_path, "latency-bound", tiny, "--latency-bound-ms", "1000", "--max-batch", "4",
                      "--num-cores", "1")
    d = doc["points"][0]
    assert d["best"]["batch_size"] == 4 and all(t["within_bound"] for t in d["tried"])
    assert all(t["mean_ms"] <= 1000 and t["p90_ms"] <= 1000 for t in d["tried"])
    res = run_cli("scenario", "latency-bound", tiny, "--engines", "onnxruntime", "--latency-bound-ms", "0.000001",
                  "--time", "0.1", "--warmup-time", "0", tmp_path=tmp_path)
    assert res.returncode != 0 and "impossible latency bound" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("scenario", "latency-bound", tiny, tmp_path=tmp_path)
    assert res.returncode != 0 and "--latency-bound-ms" in res.stderr


def test_accuracy_top1_top5(tmp_path):
    import numpy as np

    model = tiny_model()  # 8 scores per row (Relu of a Gemm)
    path = tmp_path / "t.onnx"
    onnx.save(model, path)
    import onnxruntime as ort

    x = np.random.default_rng(3).standard_normal((10, 16)).astype(np.float32)
    scores = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    y = np.argsort(-scores, axis=1)[:, 0].copy()
    y[:3] = np.argsort(-scores[:3], axis=1)[:, 6]  # 3 rows wrong at top-1 and at top-5
    np.savez(tmp_path / "d.npz", x=x, y=y)
    doc, res = scenario(tmp_path, "accuracy", str(path), "--dataset", str(tmp_path / "d.npz"), "--batch-size", "4")
    p = doc["points"][0]
    assert p["samples"] == 10 and p["top1"] == pytest.approx(0.7)
    assert p["top5"] >= p["top1"]
