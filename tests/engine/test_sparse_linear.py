"""Pruned linear layers (MatMul / Gemm with a constant weight, with their fused bias, residual
and activation) on the sparse path: SparseLinearOp alone against NumPy on every spmm variant,
whole graphs forced sparse against NumPy and ONNX Runtime, the measured choice, and zoo models
(mlp6, bert_base, vgg16 pruned 90%) forced sparse against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import sparseinfer
from sparseinfer import _core, zoo
from sparseinfer.compiler import kernel_choice
from sparseinfer.benchmark import make_inputs

from ..kernels.plan_op import ISA_ORDER, run_op, supported
from ..kernels.reference import act_ref
from .conftest import f32, make_model, ort_run, pruned
from .test_transformer_fusions import GELU_CONSTS, _gelu_nodes

TOL = {"rtol": 1e-4, "atol": 1e-4}


def reference(x, w, bias=None, residual=None, act="none"):
    """act(x @ w + bias + residual) in float64 over the last axis of x."""
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    if bias is not None:
        y = y + bias
    if residual is not None:
        y = y + residual
    return act_ref(y, act)


# ---- the op alone --------------------------------------------------------------------------

def run_linear(isa, x, w, bias=None, residual=None, act="none", num_threads=1):
    t = int(np.prod(x.shape[:-1]))
    op = _core.SparseLinearOp(t, w, bias, act, 0.0, 0.0, isa, residual is not None)
    n = w.shape[1]
    outs = [((t, n), np.float32)] + ([((op.workspace_floats,), np.float32)] if op.workspace_floats else [])
    ins = [x.reshape(t, -1)] + ([residual.reshape(t, n)] if residual is not None else [])
    return op, run_op(op, ins, outs, num_threads)[0].reshape(*x.shape[:-1], n)


OP_CASES = [  # (x shape, N, sparsity)
    ((1, 7, 30), 17, 0.9),
    ((1, 30), 17, 0.5),          # T == 1: no transposes
    ((33, 40), 35, 0.0),         # nothing a multiple of 16
    ((3, 50, 64), 96, 0.95),     # T = 150 over several transpose tiles
    ((5, 9), 4, 1.0),            # all zero: bias (+ residual) only
]


@pytest.mark.parametrize("isa", ISA_ORDER)
@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: f"x{'x'.join(map(str, c[0]))}n{c[1]}s{c[2]}")
@pytest.mark.parametrize("residual,act", [(False, "none"), (False, "gelu"), (True, "relu"), (True, "gelu")])
def test_op_matches_numpy(isa, case, residual, act):
    if not supported(isa):
        pytest.skip(f"{isa} not supported by this CPU")
    shape, n, sparsity = case
    rng = np.random.default_rng(OP_CASES.index(case))
    w = pruned(rng, (shape[-1], n), sparsity)
    x = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    r = rng.standard_normal((*shape[:-1], n)).astype(np.float32) if residual else None
    op, y = run_linear(isa, x, w, b, r, act, num_threads=2)
    np.testing.assert_allclose(y, reference(x, w, b, r, act), **TOL)
    assert op.kernel_name == f"spmm_linear_{isa}" and op.nnz == np.count_nonzero(w)


@pytest.mark.parametrize("isa", ISA_ORDER)
@pytest.mark.parametrize("x_fm,y_fm", [(True, False), (False, True), (True, True)])
def test_op_feature_major_sides(isa, x_fm, y_fm):
    """x given feature-major ([K, T]) and/or y with its residual ([N, T]): that side's transpose
    (and its workspace) is skipped, the result is the same."""
    if not supported(isa):
        pytest.skip(f"{isa} not supported by this CPU")
    rng = np.random.default_rng(21)
    T, K, N = 150, 300, 70  # K over two column panels, T over several tiles
    w = pruned(rng, (K, N), 0.9)
    x = rng.standard_normal((T, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    r = rng.standard_normal((T, N)).astype(np.float32)
    op = _core.SparseLinearOp(T, w, b, "gelu", 0.0, 0.0, isa, True, x_fm, y_fm)
    assert op.workspace_floats == T * ((0 if x_fm else K) + (0 if y_fm else N))
    ins = [np.ascontiguousarray(x.T) if x_fm else x, np.ascontiguousarray(r.T) if y_fm else r]
    outs = [((N, T) if y_fm else (T, N), np.float32)]
    if op.workspace_floats:
        outs.append(((op.workspace_floats,), np.float32))
    y = run_op(op, ins, outs, num_threads=2)[0]
    np.testing.assert_allclose(y.T if y_fm else y, reference(x, w, b, r, "gelu"), **TOL)


def test_op_bert_shape_threads_agree():
    """2 x 128 tokens x 768 -> 768 at 90% (BERT-base's attention projections): the parallel
    transposes and spmm give the same result on one and two threads, and equal NumPy."""
    rng = np.random.default_rng(7)
    w = pruned(rng, (768, 768), 0.9) * np.float32(0.1)
    x = rng.standard_normal((2, 128, 768)).astype(np.float32)
    b = rng.standard_normal(768).astype(np.float32)
    r = rng.standard_normal((2, 128, 768)).astype(np.float32)
    isa = _core.active_isa()
    _, one = run_linear(isa, x, w, b, r, "gelu", num_threads=1)
    op, two = run_linear(isa, x, w, b, r, "gelu", num_threads=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(two, reference(x, w, b, r, "gelu"), **TOL)
    # compressed: 6 bytes per nonzero (AVX-512, panels of 256 columns: 5, the column a uint8 in
    # its panel) + int32 offset per column + int32 segment starts per panel and row + int32 row
    # counts, + the bias
    panels = -(-768 // _core.spmm_panel_k(isa))
    per_nonzero = 5 if isa == "avx512" else 6
    want = per_nonzero * op.nnz + 4 * 768 + 4 * (panels * 768 + 1) + 4 * (768 + 1) + b.nbytes
    assert op.weight_bytes == want < w.nbytes / 4


def test_op_bad_arguments_are_clear_errors():
    w = np.ones((4, 3), np.float32)
    isa = _core.active_isa()
    with pytest.raises(ValueError, match="bias needs N=3 values, got 4"):
        _core.SparseLinearOp(2, w, np.ones(4, np.float32), "none", 0.0, 0.0, isa, False)
    with pytest.raises(ValueError, match="weight must be 2-D"):
        _core.SparseLinearOp(2, np.ones(4, np.float32), None, "none", 0.0, 0.0, isa, False)
    with pytest.raises(ValueError, match="T, K and N must be >= 1, got T=0"):
        _core.SparseLinearOp(0, w, None, "none", 0.0, 0.0, isa, False)
    with pytest.raises(ValueError, match="exceeds the spmm kernel's int32 offsets"):
        _core.SparseLinearOp(2 ** 30, w, None, "none", 0.0, 0.0, isa, False)
    k = _core.SPMM_MAX_K + 1
    with pytest.raises(ValueError, match=f"K = {k} exceeds the spmm kernel's column limit .expected at most 65536"):
        _core.SparseLinearOp(1, np.ones((k, 1), np.float32), None, "none", 0.0, 0.0, isa, False)


# ---- graphs through the engine ---------------------------------------------------------------

def linear_model(rng, x_shape, n, sparsity, *, gemm=False, bias=True, residual=False, act="none"):
    """MatMul(x, W) (+ B) (+ r) (+ Relu / GELU decomposed as exporters write it), or Gemm(x, W^T,
    B, transB=1) for a 2-D x: the fusion passes make one FusedGemm of each. Returns the model,
    its feeds and the NumPy reference output."""
    k = x_shape[-1]
    w = pruned(rng, (k, n), sparsity) * np.float32(1 / np.sqrt(k))
    b = rng.standard_normal(n).astype(np.float32)
    out_shape = [*x_shape[:-1], n]
    inits = {"WT": np.ascontiguousarray(w.T)} if gemm else {"W": w}
    if gemm:
        inputs = ["x", "WT"] + (["B"] if bias else [])
        nodes = [helper.make_node("Gemm", inputs, ["y0"], transB=1)]
    else:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["y0"])]
        if bias:
            nodes.append(helper.make_node("Add", ["y0", "B"], ["y0b"]))
    last = "y0b" if bias and not gemm else "y0"
    if bias:
        inits["B"] = b
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    inputs = [f32("x", list(x_shape))]
    if residual:
        feeds["r"] = rng.standard_normal(out_shape).astype(np.float32)
        inputs.append(f32("r", out_shape))
        nodes.append(helper.make_node("Add", ["r", last], ["y1"]))
        last = "y1"
    if act == "relu":
        nodes.append(helper.make_node("Relu", [last], ["y"]))
    elif act == "gelu":
        nodes += _gelu_nodes(last, "y", "erf")
        inits.update(GELU_CONSTS)
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    model = make_model(nodes, inputs, [f32("y", out_shape)], inits)
    want = reference(feeds["x"], w, b if bias else None, feeds.get("r"), act)
    return model, feeds, want


def gemm_reports(engine):
    return [r for r in engine.node_report if r.op == "FusedGemm"]


def check_forced_sparse(model, feeds, want, batch_size=1, activation=None):
    engine = sparseinfer.compile_model(model, batch_size=batch_size)
    reports = gemm_reports(engine)
    assert len(reports) == 1 and reports[0].kernels[0].startswith("spmm_linear"), engine.node_report
    assert reports[0].choice["chosen"] == "sparse" and reports[0].choice["mode"] == "sparse"
    assert engine.fraction_of_native_ops == 1.0
    got = engine(**feeds)[0]
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got, ort_run(model, feeds)[0], **TOL)
    return engine


GRAPH_CASES = [  # (x shape, N)
    ((1, 7, 30), 17),
    ((2, 9, 40), 33),
    ((30,), 17),          # 1-D x: one token
]


@pytest.mark.parametrize("case", GRAPH_CASES, ids=lambda c: f"x{'x'.join(map(str, c[0]))}n{c[1]}")
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("residual,act", [(False, "none"), (True, "relu"), (False, "gelu"), (True, "gelu")])
def test_forced_sparse_matmul_matches_numpy_and_onnxruntime(case, sparsity, residual, act, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    rng = np.random.default_rng(GRAPH_CASES.index(case) * 10 + int(sparsity * 5))
    model, feeds, want = linear_model(rng, *case, sparsity, residual=residual, act=act)
    engine = check_forced_sparse(model, feeds, want)
    # The bias, residual and activation went into the one FusedGemm's epilogue.
    assert not {r.op for r in engine.node_report} & {"MatMul", "Add", "Relu", "Erf", "Mul", "Gelu"}


@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("bias", [True, False])
def test_forced_sparse_gemm_trans_b(sparsity, bias, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    rng = np.random.default_rng(int(sparsity * 10) + bias)
    model, feeds, want = linear_model(rng, (5, 30), 17, sparsity, gemm=True, bias=bias)
    check_forced_sparse(model, feeds, want, batch_size=5)


def test_bert_sized_projection_pruned90(monkeypatch):
    """2 x 128 tokens, 768 -> 768 at 90% with bias and residual (an attention output projection)."""
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    rng = np.random.default_rng(11)
    model, feeds, want = linear_model(rng, (2, 128, 768), 768, 0.9, residual=True)
    check_forced_sparse(model, feeds, want, batch_size=2)


def test_single_nonzero_weight(monkeypatch):
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    rng = np.random.default_rng(12)
    model, feeds, _ = linear_model(rng, (3, 5, 21), 19, 1.0)
    w = np.zeros((21, 19), np.float32)
    w[13, 4] = -2.5
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, "W"))
    b = onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "B"))
    check_forced_sparse(model, feeds, reference(feeds["x"], w, b), batch_size=3)


def ffn_model(rng, x_shape, hidden, sparsities):
    """A transformer feed-forward block: GELU(x W1 + B1) W2 + B2 + x, weights pruned to
    ``sparsities``; the model, its feeds and the NumPy reference."""
    k = x_shape[-1]
    w1 = pruned(rng, (k, hidden), sparsities[0]) * np.float32(1 / np.sqrt(k))
    w2 = pruned(rng, (hidden, k), sparsities[1]) * np.float32(1 / np.sqrt(hidden))
    b1, b2 = (rng.standard_normal(n).astype(np.float32) for n in (hidden, k))
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h0"]), helper.make_node("Add", ["h0", "B1"], ["h1"]),
             *_gelu_nodes("h1", "h", "erf"),
             helper.make_node("MatMul", ["h", "W2"], ["y0"]), helper.make_node("Add", ["y0", "B2"], ["y1"]),
             helper.make_node("Add", ["y1", "x"], ["y"])]
    inits = {"W1": w1, "B1": b1, "W2": w2, "B2": b2, **GELU_CONSTS}
    model = make_model(nodes, [f32("x", list(x_shape))], [f32("y", list(x_shape))], inits)
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    want = reference(reference(feeds["x"], w1, b1, None, "gelu"), w2, b2, feeds["x"])
    return model, feeds, want


def _kernels(engine, feeds):
    return [r["kernel"] for r in engine._default.profile(list(feeds.values()), repeats=1)]


def test_feature_major_between_sparse_linear_layers(monkeypatch):
    """The feed-forward intermediate passes feature-major from the sparse up projection to the
    sparse down projection: no transpose op anywhere, and the result of ONNX Runtime."""
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    rng = np.random.default_rng(22)
    model, feeds, want = ffn_model(rng, (1, 80, 48), 200, (0.9, 0.9))
    engine = sparseinfer.compile_model(model, batch_size=1)
    assert [r.kernels[0].split("_")[0] for r in gemm_reports(engine)] == ["spmm", "spmm"]
    assert not [k for k in _kernels(engine, feeds) if "transpose" in k]
    ops = [st.op for seg in engine._default.segments for st in getattr(seg, "steps", [])
           if isinstance(st.op, _core.SparseLinearOp)]
    # Workspace only for the transposes left: the up projection's x in, the down one's y out
    # (not the 200-wide intermediate on either side).
    assert [op.workspace_floats for op in ops] == [80 * 48, 80 * 48]
    got = engine(**feeds)[0]
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got, ort_run(model, feeds)[0], **TOL)


def test_feature_major_value_read_by_a_dense_layer(monkeypatch):
    """A sparse layer writes feature-major for a linear reader that then runs dense (its weights
    are not sparse): one transpose back to row-major before it, and still the right result."""
    from sparseinfer.compiler import kernel_choice

    def by_sparsity(report, w, candidates, num_threads, unfit=None, generated=False):
        sparse = kernel_choice.weight_sparsity(w) >= 0.5 and unfit is None
        report.update({"mode": "test", "chosen": "sparse" if sparse else "dense"})
        return report["chosen"]

    monkeypatch.setattr(kernel_choice, "decide", by_sparsity)
    rng = np.random.default_rng(23)
    model, feeds, want = ffn_model(rng, (1, 33, 40), 100, (0.9, 0.0))
    engine = sparseinfer.compile_model(model, batch_size=1)
    assert [r.choice["chosen"] for r in gemm_reports(engine)] == ["sparse", "dense"]
    assert [k for k in _kernels(engine, feeds) if "transpose" in k] == ["transpose"]
    np.testing.assert_allclose(engine(**feeds)[0], want, **TOL)


def test_weight_bytes_shrink_and_dense_forcing(monkeypatch):
    rng = np.random.default_rng(13)
    model, feeds, want = linear_model(rng, (4, 256), 256, 0.9)
    bytes_ = {}
    for mode in ("dense", "sparse"):
        monkeypatch.setenv("SPARSEINFER_KERNELS", mode)
        engine = sparseinfer.compile_model(model, batch_size=4)
        (node,) = gemm_reports(engine)
        assert node.choice["chosen"] == mode and node.kernels[0].startswith(
            "spmm_linear" if mode == "sparse" else "sgemm")
        np.testing.assert_allclose(engine(**feeds)[0], want, **TOL)
        bytes_[mode] = engine.weight_bytes
    # 10% nonzeros at 5-6 bytes each (+ offsets, row starts and bias) against >= 4 bytes per weight.
    assert bytes_["sparse"] < 0.2 * bytes_["dense"], bytes_


def test_auto_choice_is_measured_and_reported(monkeypatch):
    monkeypatch.delenv("SPARSEINFER_KERNELS", raising=False)
    rng = np.random.default_rng(14)
    model, feeds, want = linear_model(rng, (256, 256), 256, 0.95, act="relu")  # 256 tokens: generated is timed
    engine = sparseinfer.compile_model(model, batch_size=256)
    choice = gemm_reports(engine)[0].choice
    assert choice["weight_sparsity"] == pytest.approx(0.95, abs=1e-3) and choice["mode"] == "auto"
    kernels = {"dense", "sparse"} | ({"generated"} if _core.active_isa() == "avx512" else set())
    assert set(choice["measured_ms"]) == set(choice["weights_ms"]) == kernels
    assert all(v > 0 for v in choice["measured_ms"].values()) and all(v > 0 for v in choice["weights_ms"].values())
    assert choice["weights_ms"]["dense"] > choice["weights_ms"]["sparse"]  # packed dense against compressed
    best = min(kernels, key=lambda k: kernel_choice.cost_ms(choice, k))
    if best == "generated" and choice["chosen"] == "sparse":  # over the weight budget: said why
        assert "SPARSEINFER_WEIGHT_BUDGET" in choice["reason"]
    else:
        assert choice["chosen"] == best
    names = {"dense": "sgemm", "sparse": f"spmm_linear_{_core.active_isa()}", "generated": "spmm_linear_generated_avx512"}
    assert gemm_reports(engine)[0].kernels[0].startswith(names[choice["chosen"]])
    np.testing.assert_allclose(engine(**feeds)[0], want, **TOL)


@pytest.mark.skipif(_core.best_isa() != "avx512", reason="generated code is AVX-512 only")
@pytest.mark.parametrize("case", GRAPH_CASES[:2] + [((3, 40, 70), 130)], ids=lambda c: f"x{'x'.join(map(str, c[0]))}n{c[1]}")
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("residual,act", [(False, "none"), (True, "relu")])
def test_forced_generated_matmul_matches_numpy_and_onnxruntime(case, sparsity, residual, act, monkeypatch):
    """Linear layers as generated code (forced: whatever the weight budget and token count)."""
    monkeypatch.setenv("SPARSEINFER_KERNELS", "generated")
    rng = np.random.default_rng(GRAPH_CASES.index(case) * 10 + int(sparsity * 5) + 3 if case in GRAPH_CASES else 5)
    model, feeds, want = linear_model(rng, *case, sparsity, residual=residual, act=act)
    engine = sparseinfer.compile_model(model)
    (report,) = gemm_reports(engine)
    assert report.kernels[0] == "spmm_linear_generated_avx512" and report.choice["chosen"] == "generated"
    got = engine(**feeds)[0]
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got, ort_run(model, feeds)[0], **TOL)


@pytest.mark.skipif(_core.best_isa() != "avx512", reason="generated code is AVX-512 only")
def test_generated_feed_forward_chain_matches_onnxruntime(monkeypatch):
    """Up and down projections as generated code, the intermediate passed feature-major."""
    monkeypatch.setenv("SPARSEINFER_KERNELS", "generated")
    rng = np.random.default_rng(21)
    w1, w2 = pruned(rng, (48, 96), 0.9), pruned(rng, (96, 48), 0.9)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    model = make_model(nodes, [f32("x", [2, 33, 48])], [f32("y", [2, 33, 48])], {"W1": w1, "W2": w2})
    feeds = {"x": rng.standard_normal((2, 33, 48)).astype(np.float32)}
    engine = sparseinfer.compile_model(model, batch_size=2)
    assert [r.kernels[0] for r in gemm_reports(engine)] == ["spmm_linear_generated_avx512"] * 2
    np.testing.assert_allclose(engine(**feeds)[0], ort_run(model, feeds)[0], **TOL)


def test_dense_layers_are_not_timed(monkeypatch):
    monkeypatch.delenv("SPARSEINFER_KERNELS", raising=False)
    rng = np.random.default_rng(15)
    model, _, _ = linear_model(rng, (8, 32), 16, 0.1)
    (node,) = gemm_reports(sparseinfer.compile_model(model, batch_size=8))
    assert node.choice["chosen"] == "dense" and "measured_ms" not in node.choice
    assert node.kernels[0].startswith("sgemm")


def test_candidates_are_timed_alternately_and_keep_their_fastest(monkeypatch):
    """choose() times every candidate TIMING_PASSES times, in alternating order, and weighs each by
    its fastest timing: a slow spell while one candidate was timed does not decide."""
    calls = []
    script = {("a", 0): 5e-3, ("b", 0): 1e-3, ("b", 1): 3e-3, ("a", 1): 0.5e-3}

    def fake_time_op(op, *args, **kw):
        k = sum(1 for c in calls if c == op)
        calls.append(op)
        return script[(op, k)]

    monkeypatch.setattr(kernel_choice, "time_op", fake_time_op)
    monkeypatch.setattr(kernel_choice, "TIMING_PASSES", 2)
    cands = [kernel_choice.Candidate("a", "a", [1], 1), kernel_choice.Candidate("b", "b", [1], 1)]
    best, report = kernel_choice.choose(cands, 1)
    assert calls == ["a", "b", "b", "a"]
    assert report["measured_ms"] == {"a": 0.5, "b": 1.0}
    assert best.name == "a" and report["chosen"] == "a"


def test_layers_beyond_the_kernels_offsets_stay_dense(monkeypatch):
    """(K - 1) x tokens past the spmm's int32 offsets: dense even when sparse is forced, and said."""
    from sparseinfer.compiler import lowering

    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    monkeypatch.setenv("SPARSEINFER_BATCHING", "batched")  # one plan over the 8 rows, not 8 one-row streams
    monkeypatch.setattr(lowering, "_INT32_MAX", 100)
    rng = np.random.default_rng(16)
    model, feeds, want = linear_model(rng, (8, 32), 16, 0.9)
    engine = sparseinfer.compile_model(model, batch_size=8)
    (node,) = gemm_reports(engine)
    assert node.choice["chosen"] == "dense" and "int32 offsets" in node.choice["reason"]
    np.testing.assert_allclose(engine(**feeds)[0], want, **TOL)


def test_layers_beyond_the_kernels_columns_stay_dense(monkeypatch):
    """K past the spmm's uint16 column indices: dense even when sparse is forced, and said."""
    from sparseinfer.compiler import lowering

    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    monkeypatch.setattr(lowering, "_SPMM_MAX_K", 31)
    rng = np.random.default_rng(17)
    model, feeds, want = linear_model(rng, (2, 32), 16, 0.9)
    (node,) = gemm_reports(sparseinfer.compile_model(model, batch_size=2))
    assert node.choice["chosen"] == "dense" and node.kernels[0].startswith("sgemm")
    assert node.choice["reason"] == "K = 32 weight columns exceed the sparse kernel's limit of 31"
    monkeypatch.setattr(lowering, "_SPMM_MAX_K", 32)
    engine = sparseinfer.compile_model(model, batch_size=2)
    (node,) = gemm_reports(engine)
    assert node.choice["chosen"] == "sparse" and "reason" not in node.choice
    np.testing.assert_allclose(engine(**feeds)[0], want, **TOL)


# ---- zoo models ----------------------------------------------------------------------------

def _forced_sparse_zoo(stub, feeds, monkeypatch, batch_size, **kwargs):
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    path = zoo.resolve(stub)
    engine = sparseinfer.compile_model(path, batch_size=batch_size, **kwargs)
    gemms = gemm_reports(engine)
    assert gemms and all(r.kernels[0].startswith("spmm_linear") and r.choice["chosen"] == "sparse" for r in gemms)
    for g, w in zip(engine(**feeds), ort_run(onnx.load(path), feeds)):
        np.testing.assert_allclose(g, w, **TOL)
    return engine


def test_mlp6_pruned90_forced_sparse_matches_onnxruntime(monkeypatch):
    path = zoo.resolve("zoo:mlp6-pruned90")
    feeds = make_inputs(onnx.load(path), 4, seed=3)
    engine = _forced_sparse_zoo("zoo:mlp6-pruned90", feeds, monkeypatch, batch_size=4)
    assert len(gemm_reports(engine)) == 6


@pytest.mark.slow
def test_bert_base_pruned90_forced_sparse_matches_onnxruntime(monkeypatch):
    feeds = zoo.example_inputs("bert_base", batch_size=1, seq_len=32, seed=5)
    engine = _forced_sparse_zoo("zoo:bert_base-pruned90", feeds, monkeypatch, batch_size=1,
                                input_shapes={k: v.shape for k, v in feeds.items()})
    assert engine.fraction_of_native_ops == 1.0
    # 12 layers x (Q, K, V, output, FFN in, FFN out) + pooler + classifier.
    assert len(gemm_reports(engine)) >= 72


@pytest.mark.slow
def test_vgg16_pruned90_fc_layers_go_sparse(monkeypatch):
    path = zoo.resolve("zoo:vgg16-pruned90")
    feeds = make_inputs(onnx.load(path), 1, seed=3)
    engine = _forced_sparse_zoo("zoo:vgg16-pruned90", feeds, monkeypatch, batch_size=1)
    assert len(gemm_reports(engine)) == 3
