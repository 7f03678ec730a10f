"""analyze and check-hardware: tables consistent with the model and the CPU."""

from __future__ import annotations

import json

import onnx
import pytest

from sparseinfer.benchmark.analyze import analyze
from sparseinfer.benchmark.hardware import hardware_report
from tests.benchmark.test_benchmark_tool import run_cli, tiny_model


def test_analyze_tiny_model(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    rep = analyze(str(path), batch_size=4, num_cores=1, repeats=3)
    gemm = [x for x in rep["layers"] if x["flops"]]
    assert len(gemm) == 1 and gemm[0]["flops"] == 2 * 4 * 16 * 8
    assert gemm[0]["input_shapes"][0] == [4, 16] and gemm[0]["output_shapes"] == [[4, 8]]
    assert gemm[0]["weight_sparsity"] == pytest.approx(0.0) and gemm[0]["kernel"]
    assert sum(x["share"] for x in rep["layers"]) == pytest.approx(1.0)
    assert all(x["ms"] > 0 for x in rep["layers"]) and rep["gflops_per_s"] > 0
    assert 0 < rep["gzip9_bytes"] < rep["file_bytes"] + 100 and rep["file_bytes"] == path.stat().st_size


def test_analyze_cli_pruned_zoo_model(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "a.json"
    res = run_cli("analyze", "zoo:mlp6-pruned90", "--batch-size", "2", "--export-json", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    sparsities = [x["weight_sparsity"] for x in doc["layers"] if x["weight_sparsity"] is not None]
    assert max(sparsities) == pytest.approx(0.9, abs=0.01)  # hidden layers pruned, classifier dense
    assert doc["gzip9_bytes"] < doc["file_bytes"] / 2  # 90% zeros compress well
    assert "gzip -9" in res.stdout and "GFLOP/s" in res.stdout


def test_check_hardware(tmp_path):
    rep = hardware_report()
    assert rep["physical_cores"] >= 1 and rep["active_isa"] in ("avx512", "avx2", "portable")
    assert set(rep["features"]) >= {"avx2", "avx512f"} and rep["kernels"]
    res = run_cli("check-hardware", tmp_path=tmp_path)
    assert res.returncode == 0 and "ISA:" in res.stdout and "cores:" in res.stdout
    res = run_cli("check-hardware", "--json", tmp_path=tmp_path)
    assert json.loads(res.stdout)["active_isa"] == rep["active_isa"]


def test_analyze_bad_model(tmp_path):
    res = run_cli("analyze", "/nonexistent/m.onnx", tmp_path=tmp_path)
    assert res.returncode != 0 and "/nonexistent/m.onnx" in res.stderr and "Traceback" not in res.stderr
