"""DeepSparse as a peer: it runs in its own process, from its own virtual environment
(deepsparse 1.8 pins older numpy/onnx than ours), through sparseinfer.benchmark.worker.

The real runs need such an environment: $SPARSEINFER_DEEPSPARSE_PYTHON, else
/work/ds-venv/bin/python (``python -m venv /work/ds-venv && /work/ds-venv/bin/pip install
deepsparse==1.8.0``); without one they are skipped (CI has none). The error paths run anywhere."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from sparseinfer.benchmark.compare import output_diff
from sparseinfer.benchmark.runners import (DEEPSPARSE_PYTHON_ENV, PeerNotInstalled, deepsparse_python, make_runner,
                                           split_installed)
from sparseinfer.benchmark.worker import Worker, open_engine
from tests.benchmark.test_benchmark_tool import run_cli, tiny_model

DS_PYTHON = os.environ.get(DEEPSPARSE_PYTHON_ENV) or "/work/ds-venv/bin/python"


@pytest.fixture(scope="module")
def ds_python() -> str:
    try:
        return deepsparse_python(DS_PYTHON)
    except PeerNotInstalled as exc:
        pytest.skip(f"no virtual environment with DeepSparse at {DS_PYTHON}: {exc}")


@pytest.fixture(scope="module")
def mlp6():
    pytest.importorskip("torch", reason="exporting zoo:mlp6 needs torch")
    from sparseinfer.benchmark.inputs import load_model

    return load_model("zoo:mlp6")


@pytest.fixture
def tiny(tmp_path) -> str:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    return str(path)


# ---- without DeepSparse: the messages say how to get it ----------------------------------------
def test_deepsparse_python_says_how_to_create_the_venv(monkeypatch, tmp_path):
    if importlib.util.find_spec("deepsparse"):
        pytest.skip("deepsparse is importable in this environment: it is then used without a venv")
    monkeypatch.delenv(DEEPSPARSE_PYTHON_ENV, raising=False)
    how = "python -m venv VENV && VENV/bin/pip install deepsparse==1.8.0"
    with pytest.raises(PeerNotInstalled, match="no Python with deepsparse given") as e:
        deepsparse_python()
    assert how in str(e.value) and "--deepsparse-python VENV/bin/python" in str(e.value)
    assert DEEPSPARSE_PYTHON_ENV in str(e.value)
    with pytest.raises(PeerNotInstalled, match="is not an executable Python") as e:
        deepsparse_python(str(tmp_path / "python"))
    assert how in str(e.value)
    with pytest.raises(PeerNotInstalled, match=r"deepsparse is not importable by .*ModuleNotFoundError") as e:
        deepsparse_python(sys.executable)  # ours, which has no deepsparse
    assert how in str(e.value)
    monkeypatch.setenv(DEEPSPARSE_PYTHON_ENV, sys.executable)
    ok, skipped = split_installed(["onnxruntime", "deepsparse"])
    assert ok == ["onnxruntime"] and len(skipped) == 1 and "not importable by" in skipped[0]


def test_cli_without_deepsparse_benchmark_fails_compare_skips(tiny, tmp_path):
    res = run_cli("benchmark", tiny, "--engine", "deepsparse", "--deepsparse-python", "/nonexistent/bin/python",
                  "--time", "0.1", "--warmup-time", "0", "--no-progress", tmp_path=tmp_path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "/nonexistent/bin/python is not an executable Python" in res.stderr
    assert "python -m venv VENV && VENV/bin/pip install deepsparse==1.8.0" in res.stderr
    res = run_cli("benchmark", tiny, "--engine", "onnxruntime,deepsparse", "--deepsparse-python", sys.executable,
                  "--time", "0.1", "--warmup-time", "0", "--no-progress", tmp_path=tmp_path)
    assert res.returncode == 3 and "deepsparse is not importable by" in res.stderr and "onnxruntime" in res.stdout
    out = tmp_path / "rep"
    res = run_cli("compare", tiny, "--engines", "sparseinfer,onnxruntime,deepsparse", "--deepsparse-python",
                  sys.executable, "--time", "0.2", "--warmup-time", "0", "--rounds", "2", "--output-dir", str(out),
                  "--no-progress", tmp_path=tmp_path)
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr
    doc = json.loads((out / "compare.json").read_text())
    assert [r["engine"] for r in doc["rows"]] == ["sparseinfer", "onnxruntime"]
    assert len(doc["skipped"]) == 1 and "engine 'deepsparse' skipped: deepsparse is not importable" in doc["skipped"][0]
    assert "deepsparse is not importable" in (out / "compare.md").read_text()


# ---- with DeepSparse's venv: real runs --------------------------------------------------------
def test_worker_runs_deepsparse_in_its_venv(ds_python, mlp6, monkeypatch):
    monkeypatch.setenv(DEEPSPARSE_PYTHON_ENV, ds_python)
    from sparseinfer.benchmark.inputs import feeds_for

    model, path = mlp6
    feeds = feeds_for(model, 4)
    ort = make_runner("onnxruntime", model, 4, 1)
    with pytest.raises(ValueError, match="runs in its own process"):
        make_runner("deepsparse", model, 4, 1)
    before = Path(path).read_bytes()
    w = open_engine("deepsparse", model, path, feeds, 4, 1)
    with w:
        assert isinstance(w, Worker) and w.ready["version"] == "deepsparse 1.8.0"
        assert w.ready["python"] != sys.executable and w.ready["pid"] != os.getpid()
        assert output_diff(w.outputs(), ort(feeds))[0] < 1e-4  # its own summation order
        other = feeds_for(model, 4, seed=7)
        assert output_diff(w(other), ort(other))[0] < 1e-4 and output_diff(w(other), ort(feeds))[0] > 1e-3
        s = w.time_slice(0.05, min_iters=4)
        assert len(s.latencies_s) >= 4 and s.wall_s >= sum(s.latencies_s) and s.cpu_s >= 0
        assert s.peak_rss_mib >= w.ready["peak_rss_mib"] > 20  # DeepSparse's own process
    assert Path(path).read_bytes() == before  # given input shapes, deepsparse rewrites its model file


def test_cli_benchmark_and_compare_with_deepsparse(ds_python, mlp6, tmp_path):
    _, path = mlp6
    out = tmp_path / "b.json"
    res = run_cli("benchmark", path, "--engine", "deepsparse", "--deepsparse-python", ds_python, "--batch-size", "2",
                  "--num-cores", "1", "--time", "0.3", "--warmup-time", "0.05", "--no-progress", "--export-json",
                  str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    r = json.loads(out.read_text())["results"]["deepsparse"]
    assert r["iterations"] >= 3 and r["items_per_s"] == pytest.approx(2 / (r["mean_ms"] / 1e3))
    assert r["p99_ms"] >= r["median_ms"] > 0 and 0 <= r["cpu_percent"] <= 100 * os.cpu_count() * 1.05
    assert r["peak_rss_mib"] > 20
    res = run_cli("benchmark", path, "--engine", "sparseinfer,deepsparse", "--scenario", "async", "--num-streams", "2",
                  "--num-cores", "2", "--time", "0.3", "--warmup-time", "0.05", "--no-progress", "--export-json",
                  str(out), tmp_path=tmp_path, env={DEEPSPARSE_PYTHON_ENV: ds_python})
    assert res.returncode == 0, res.stderr
    for r in json.loads(out.read_text())["results"].values():
        assert r["num_streams"] == 2 and r["iterations"] > 0 and r["items"] == r["iterations"]
        assert r["items_per_s"] == pytest.approx(r["items"] / r["wall_s"])
        assert 0 <= r["cpu_percent"] <= 100 * os.cpu_count() * 1.05 and r["peak_rss_mib"] > 20
    rep = tmp_path / "rep"
    res = run_cli("compare", path, "--engines", "sparseinfer,onnxruntime,deepsparse", "--deepsparse-python", ds_python,
                  "--batch-size", "3", "--time", "0.3", "--warmup-time", "0.05", "--rounds", "2", "--output-dir",
                  str(rep), "--no-progress", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {r["engine"]: r for r in json.loads((rep / "compare.json").read_text())["rows"]}
    ds = rows["deepsparse"]
    assert ds["version"] == "deepsparse 1.8.0" and ds["max_abs_diff"] < 1e-4 and ds["max_rel_diff"] < 1e-4
    assert ds["items_per_s"] == pytest.approx(3 / (ds["mean_ms"] / 1e3)) and len(ds["round_medians_ms"]) == 2
    assert 0 <= ds["cpu_percent"] <= 100 * os.cpu_count() * 1.05 and ds["peak_rss_mib"] > 20
    assert "| deepsparse |" in res.stdout
    assert np.isfinite([r["speedup"] for r in rows.values()]).all()
