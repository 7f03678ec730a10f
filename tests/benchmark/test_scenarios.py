"""The study's named scenarios on a tiny model: plausibility of each workload's numbers, and
the PNG chart each one writes next to its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from sparseinfer.benchmark.report import scenario_chart
from tests.benchmark.test_benchmark_tool import run_cli, tiny_model

TWO = "sparseinfer,onnxruntime"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    return str(path)


def scenario(tmp_path, *args, engines="onnxruntime"):
    out = tmp_path / f"{args[0]}.json"
    res = run_cli("scenario", *args, "--engines", engines, "--time", "0.2", "--warmup-time", "0.05",
                  "--export-json", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text()), res


def chart_of(doc: dict, tmp_path: Path) -> list[dict]:
    """Checks the PNG the scenario wrote next to its JSON (a decodable image of a report's size)
    and returns what the chart draws for that document (per panel: line series and bars)."""
    import matplotlib.image

    png = Path(doc["chart"])
    assert png.parent == tmp_path and png.suffix == ".png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(png).shape[:2]
    assert height >= 400 and width >= 500
    return scenario_chart(doc, tmp_path / "again.png")


def test_single_stream_chart_bars_per_engine(tiny, tmp_path):
    doc, res = scenario(tmp_path, "single-stream", tiny, engines=TWO)
    assert [p["engine"] for p in doc["points"]] == ["sparseinfer", "onnxruntime"]
    assert all(p["batch_size"] == 1 for p in doc["points"]) and f"chart: {doc['chart']}" in res.stdout
    drawn = chart_of(doc, tmp_path)
    assert len(drawn) == 4 and all(panel["bars"] == 2 for panel in drawn)


def test_large_batch_and_thread_sweep(tiny, tmp_path):
    doc, _ = scenario(tmp_path, "large-batch", tiny, "--max-batch", "64", engines=TWO)
    assert [p["batch_size"] for p in doc["points"]] == [1, 8, 64] * 2
    for p in doc["points"]:
        assert p["items_per_s"] == pytest.approx(p["batch_size"] / (p["mean_ms"] / 1e3))
        assert p["p99_ms"] >= p["median_ms"] and 0 <= p["cpu_percent"] <= 100 * doc["num_cores"] * 1.05
    drawn = chart_of(doc, tmp_path)  # items/s and latency vs batch, a line per engine
    assert [panel["lines"] for panel in drawn] == [["sparseinfer", "onnxruntime"]] * 2
    doc, _ = scenario(tmp_path, "thread-sweep", tiny, "--num-cores", "2", engines=TWO)
    assert [p["threads"] for p in doc["points"]] == [1, 2] * 2
    drawn = chart_of(doc, tmp_path)
    assert [panel["lines"] for panel in drawn] == [["sparseinfer", "onnxruntime"]] * 2
    assert "items/s" in drawn[0]["title"] and "latency" in drawn[1]["title"]


def test_multi_instance_splits_cores(tiny, tmp_path):
    doc, res = scenario(tmp_path, "multi-instance", tiny, "--num-cores", "2", "--batch-size", "2", engines=TWO)
    assert [p["instances"] for p in doc["points"]] == [1, 2] * 2
    assert doc["points"][1]["cores_per_instance"] == [1, 1]
    for p in doc["points"]:
        assert p["items_per_s"] > 0 and p["iterations"] > 0 and p["p99_ms"] >= p["median_ms"]
    drawn = chart_of(doc, tmp_path)  # total items/s vs instances, a line per engine
    assert [panel["lines"] for panel in drawn] == [["sparseinfer", "onnxruntime"]] * 2
    assert drawn[0]["title"].startswith("total items/s")


def test_latency_bound_search_and_impossible_bound(tiny, tmp_path):
    doc, _ = scenario(tmp_path, "latency-bound", tiny, "--latency-bound-ms", "1000", "--max-batch", "4",
                      "--num-cores", "1")
    d = doc["points"][0]
    assert [t["batch_size"] for t in d["tried"]] == [1, 2, 4] and all(t["within_bound"] for t in d["tried"])
    assert d["best"] == max(d["tried"], key=lambda t: t["items_per_s"])  # the fastest within the bound
    assert all(t["mean_ms"] <= 1000 and t["p90_ms"] <= 1000 for t in d["tried"])
    drawn = chart_of(doc, tmp_path)  # p90 per configuration (one line per stream count) vs the bound; best
    assert drawn[0]["lines"] == ["onnxruntime, 1 stream", "bound 1000 ms"] and drawn[1]["bars"] == 1
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
    assert chart_of(doc, tmp_path)[0]["bars"] == 2  # top-1 and top-5 of the one engine


def test_chart_option_and_bad_documents(tiny, tmp_path):
    chart = tmp_path / "sweep.png"
    res = run_cli("scenario", "thread-sweep", tiny, "--engines", "onnxruntime", "--num-cores", "1", "--time", "0.1",
                  "--warmup-time", "0", "--chart", str(chart), tmp_path=tmp_path)
    assert res.returncode == 0 and chart.read_bytes()[:4] == b"\x89PNG" and f"chart: {chart}" in res.stdout
    with pytest.raises(ValueError, match="no points to chart"):
        scenario_chart({"scenario": "large-batch", "points": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no chart for scenario 'nope'"):
        scenario_chart({"scenario": "nope", "points": [{}], "model": "m", "num_cores": 1}, tmp_path / "x.png")
