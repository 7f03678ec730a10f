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


def test_analyze_streamed_batch_counts_per_image(tmp_path, monkeypatch):
    """A batch run as streams of single images is profiled per image: its FLOPs (and so its
    GFLOP/s) are per image too, and its shapes those of one image."""
    import numpy as np
    from onnx import helper

    from tests.engine.conftest import f32, make_model

    monkeypatch.setenv("SPARSEINFER_BATCHING", "streams")
    w = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                       [f32("x", ["N", 8, 10, 10])], [f32("y", ["N", 16, 10, 10])], {"w": w})
    path = tmp_path / "conv.onnx"
    onnx.save(model, path)
    rep = analyze(str(path), batch_size=4, num_cores=2, repeats=2)
    (conv,) = [x for x in rep["layers"] if x["flops"]]
    assert rep["per"] == "image" and "streams" in rep["batching"]
    assert conv["flops"] == 2 * 16 * 8 * 9 * 100 and conv["input_shapes"][0] == [1, 8, 10, 10]
    assert conv["gflops_per_s"] == pytest.approx(conv["flops"] / (conv["ms"] * 1e6))


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


def test_analyze_counts_the_fused_attention(tmp_path):
    """The fused Attention node gets the FLOPs of the two MatMuls it replaced, so the analyzed
    total equals the ONNX model's count."""
    torch = pytest.importorskip("torch")
    from sparseinfer.graph.flops import analyze_flops
    from sparseinfer.zoo.architectures import bert

    torch.manual_seed(0)
    cfg = bert.BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(2, 8, dtype=torch.int64)
    path = tmp_path / "bert.onnx"
    torch.onnx.export(bert.BertForSequenceClassification(cfg, 2).eval(), (ids, ids, ids), str(path), dynamo=False,
                      opset_version=17, input_names=names, output_names=["logits"],
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names})
    rep = analyze(str(path), batch_size=2, num_cores=1, repeats=1,
                  input_shapes=",".join(f"{n}:2x16" for n in names))
    attention = [x for x in rep["layers"] if x["op"] == "Attention"]
    assert len(attention) == 2
    # Q K^T and P V: batch 2, 4 heads, 16 x 16 scores, head dim 8 each.
    assert all(x["flops"] == 2 * (2 * 4 * 16 * 16 * 8) * 2 for x in attention)
    want = analyze_flops(onnx.load(path), {n: [2, 16] for n in names}).flops
    assert rep["total_flops"] == want


@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_attention_macs_in_both_layouts(layout):
    from sparseinfer.graph.flops import attention_macs
    from sparseinfer.graph.ir import Node

    b, h, sq, sk, d, dv = 2, 3, 5, 7, 4, 6
    shape = (lambda s, e: (b, s, h, e)) if layout == "bshd" else (lambda s, e: (b, h, s, e))
    node = Node("Attention", ("q", "k", "v"), ("o",), {f"{n}_layout": layout for n in "qkv"})
    shapes = {"q": shape(sq, d), "k": shape(sk, d), "v": shape(sk, dv)}
    assert attention_macs(node, shapes) == b * h * sq * sk * d + b * h * sq * sk * dv
