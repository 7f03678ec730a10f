"""Pruned convolutions through the engine: the sparse (spmm) path forced on every conv, and the
measured dense-vs-sparse choice, against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import sparseinfer
from sparseinfer import _core
from sparseinfer.compiler import kernel_choice

from ..kernels.plan_op import run_op
from .conftest import f32, make_model, ort_run, pruned


def conv_block(rng, n, c, h, w, k, kernel, stride, pads, dil, sparsity, residual, act):
    """Conv (+ bias) [+ Add residual] [+ Relu]: the fusion pass makes one FusedConv of it."""
    weights = {"W": pruned(rng, (k, c, kernel, kernel), sparsity), "B": rng.standard_normal(k).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y0"], strides=[stride, stride], pads=pads,
                              dilations=[dil, dil])]
    last = "y0"
    oh = (h + pads[0] + pads[2] - dil * (kernel - 1) - 1) // stride + 1
    ow = (w + pads[1] + pads[3] - dil * (kernel - 1) - 1) // stride + 1
    inputs = [f32("x", [n, c, h, w])]
    if residual:
        inputs.append(f32("r", [n, k, oh, ow]))
        nodes.append(helper.make_node("Add", [last, "r"], ["y1"]))
        last = "y1"
    if act:
        nodes.append(helper.make_node("Relu", [last], ["y2"]))
        last = "y2"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    model = make_model(nodes, inputs, [f32("y", [n, k, oh, ow])], weights)
    feeds = {"x": rng.standard_normal((n, c, h, w)).astype(np.float32)}
    if residual:
        feeds["r"] = rng.standard_normal((n, k, oh, ow)).astype(np.float32)
    return model, feeds


ISAS = [isa for isa in ("portable", "avx2", "avx512")
        if ("portable", "avx2", "avx512").index(isa) <= ("portable", "avx2", "avx512").index(_core.best_isa())]


@pytest.fixture
def active_isa(request):
    before = _core.active_isa()
    _core.set_active_isa(request.param)
    yield request.param
    _core.set_active_isa(before)


CASES = [  # (n, c, h, w, k, kernel, stride, pads, dil)
    (1, 16, 14, 14, 32, 1, 1, [0, 0, 0, 0], 1),       # 1x1: reads the planes in place
    (2, 24, 9, 7, 40, 1, 1, [0, 0, 0, 0], 1),         # odd sizes, batch 2
    (1, 32, 14, 14, 16, 1, 2, [0, 0, 0, 0], 1),       # 1x1 stride 2 (ResNet downsample): gathered
    (1, 12, 9, 7, 20, 1, 3, [0, 0, 0, 0], 1),         # 1x1 stride 3, odd sizes
    (1, 16, 12, 12, 24, 3, 1, [1, 1, 1, 1], 1),       # 3x3 same
    (2, 8, 11, 13, 20, 3, 2, [1, 1, 1, 1], 1),        # 3x3 stride 2, odd sizes
    (1, 8, 10, 10, 8, 3, 1, [0, 0, 0, 0], 1),         # valid
    (1, 8, 12, 12, 8, 3, 1, [2, 2, 2, 2], 2),         # dilated
    (1, 4, 17, 17, 12, 5, 1, [2, 1, 2, 3], 1),        # 5x5, asymmetric pads
    (1, 3, 20, 20, 16, 7, 2, [3, 3, 3, 3], 1),        # stem-like 7x7 stride 2
    (1, 6, 13, 14, 8, 3, 3, [1, 1, 1, 1], 1),         # 3x3 stride 3: three column phases per row
    # stride-2 inputs of wide rows: phase rows and gathered rows copied 4 columns at a time
    (1, 4, 40, 37, 8, 3, 2, [1, 0, 0, 1], 1),         # 3x3 stride 2, odd width, no left pad
    (1, 8, 40, 42, 8, 1, 2, [0, 0, 0, 0], 1),         # 1x1 stride 2, 21-pixel rows
    # batches run batch-major (CNHW): one spmm over every image
    (3, 16, 7, 7, 32, 1, 1, [0, 0, 0, 0], 1),         # 1x1 on 7x7 maps, batch 3
    (3, 8, 9, 9, 16, 3, 2, [1, 1, 1, 1], 1),          # 3x3 stride 2, batch 3
    (2, 8, 10, 10, 8, 3, 1, [0, 0, 0, 0], 1),         # valid: rows past OH in every plane
    (4, 8, 8, 8, 8, 1, 2, [0, 0, 0, 0], 1),           # 1x1 stride 2, batch 4
    # rows that fill the vectors: generated code reads the (padded) input in place
    (1, 8, 16, 16, 12, 3, 1, [1, 1, 1, 1], 1),        # 16-pixel rows
    (2, 6, 30, 30, 8, 3, 2, [1, 1, 1, 1], 1),         # 15-pixel rows, stride 2, batch 2
    (1, 5, 9, 40, 12, 3, 1, [1, 1, 1, 1], 1),         # 40-pixel rows: a full and a masked vector each
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}{c[2]}x{c[3]}k{c[4]}r{c[5]}s{c[6]}d{c[8]}")
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("residual,act", [(False, False), (True, True), (False, True)])
@pytest.mark.parametrize("active_isa", ISAS, indirect=True)  # every spmm variant's packing and maps
def test_forced_sparse_conv_matches_onnxruntime(case, sparsity, residual, act, active_isa, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    rng = np.random.default_rng(CASES.index(case) * 100 + int(sparsity * 10) * 4 + 2 * residual + act)
    model, feeds = conv_block(rng, *case, sparsity=sparsity, residual=residual, act=act)
    engine = sparseinfer.compile_model(model, batch_size=case[0])
    conv = [r for r in engine.node_report if r.op == "FusedConv"]
    assert len(conv) == 1 and conv[0].kernels[0].startswith("spmm_conv"), engine.node_report
    assert conv[0].choice["chosen"] == "sparse"
    got = engine(**feeds)[0]
    want = ort_run(model, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(_core.best_isa() != "avx512", reason="generated code is AVX-512 only")
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}{c[2]}x{c[3]}k{c[4]}r{c[5]}s{c[6]}d{c[8]}")
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("residual,act", [(False, False), (True, True)])
def test_forced_generated_conv_matches_onnxruntime(case, sparsity, residual, act, monkeypatch):
    """The generated-code kernel on every conv path (in place, gathered, mapped over phase
    planes, batch-major): forced, it runs whatever the weight budget, and matches ORT."""
    monkeypatch.setenv("SPARSEINFER_KERNELS", "generated")
    monkeypatch.setenv("SPARSEINFER_WEIGHT_BUDGET", "0")
    rng = np.random.default_rng(CASES.index(case) * 100 + int(sparsity * 10) * 4 + 2 * residual + act + 7)
    model, feeds = conv_block(rng, *case, sparsity=sparsity, residual=residual, act=act)
    engine = sparseinfer.compile_model(model, batch_size=case[0])
    conv = [r for r in engine.node_report if r.op == "FusedConv"]
    assert len(conv) == 1 and "_generated_avx512" in conv[0].kernels[0], engine.node_report
    assert conv[0].choice["chosen"] == "generated"
    np.testing.assert_allclose(engine(**feeds)[0], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(_core.best_isa() != "avx512", reason="generated code is AVX-512 only")
def test_generated_code_memory_is_counted_and_can_be_dropped():
    rng = np.random.default_rng(8)
    w = pruned(rng, (32, 16, 3, 3), 0.9)
    args = (w, None, [1, 1], [1, 1, 1, 1], [1, 1], [1, 16, 12, 12], "relu", 0.0, 0.0, "avx512", False, False)
    plain, gen = _core.SparseConvOp(*args, False), _core.SparseConvOp(*args, True)
    nnz = int((w != 0).sum())
    assert plain.generated_bytes == 0 and gen.generated_bytes >= 11 * nnz  # >= 7 B of code + 4 of weight each
    assert gen.weight_bytes == plain.weight_bytes + gen.generated_bytes
    assert gen.kernel_name == "spmm_conv3x3_generated_avx512" and plain.kernel_name == "spmm_conv3x3_avx512"
    # (AVX-512 weights, panels of 256 columns: 5 bytes per nonzero, a uint8 column within its panel)
    assert gen.releasable_bytes == 5 * nnz + 4 * (32 + 1) + 4 * (32 + 1) and plain.releasable_bytes == 0
    kept = _core.SparseConvOp(*args, True)
    kept.release_compressed()  # the code stays, the compressed nonzeros go
    assert kept.weight_bytes == gen.weight_bytes - gen.releasable_bytes and kept.nnz == nnz
    with pytest.raises(RuntimeError, match="released"):
        kept.drop_generated()
    gen.drop_generated()
    assert (gen.generated_bytes, gen.weight_bytes, gen.kernel_name) == (0, plain.weight_bytes, plain.kernel_name)
    with pytest.raises(ValueError, match="generated code needs avx512, got avx2"):
        _core.SparseConvOp(*args[:9], "avx2", False, False, True)


@pytest.mark.skipif(_core.best_isa() != "avx512", reason="generated code is AVX-512 only")
@pytest.mark.parametrize("k,c,hw,kernel,in_place", [
    (64, 64, 56, 3, True),     # resnet50 layer1 3x3: few output channels, 56-pixel rows
    (128, 512, 28, 1, True),   # a 1x1 reduce: its planes are one run
    (256, 512, 28, 1, False),  # many output channels share each packed tile of a 1x1 conv
    (256, 256, 56, 3, True),   # a same-size 3x3 conv: its copy packs every tap; vectors over whole images
    (512, 64, 14, 3, True),
    (640, 64, 14, 3, False),   # past 512 output channels it packs
    (64, 64, 7, 3, False),     # 7x7 images fill 49 of 64 lanes
])
def test_generated_code_reads_in_place_where_it_pays(k, c, hw, kernel, in_place):
    w = pruned(np.random.default_rng(9), (k, c, kernel, kernel), 0.9)
    pads = [kernel // 2] * 4
    op = _core.SparseConvOp(w, None, [1, 1], pads, [1, 1], [1, c, hw, hw], "none", 0.0, 0.0, "avx512", False,
                            False, True)
    assert op.generated_in_place == in_place
    rows = _core.SparseConvOp(w, None, [1, 1], pads, [1, 1], [1, c, hw, hw], "none", 0.0, 0.0, "avx512",
                              False, False, False)
    assert not rows.generated_in_place
    # A stride-1 KxK conv whose kernel packs its tiles reads the planes unpadded (implicit padding):
    # no padded copy, no workspace; code reading in place gets the planes with their padding rows,
    # on a line, and a line of slack on each side (it loads whole lines): three lines more.
    if kernel == 3:
        assert rows.workspace_floats == 0
        assert op.workspace_floats == (c * (hw + 2) * hw + 48 if in_place else 0)


@pytest.mark.skipif(_core.best_isa() != "avx512", reason="generated code is AVX-512 only")
@pytest.mark.parametrize("hw", [16, 6])  # code reading in place (the padding rows copied), packed code (none)
def test_convs_stay_exact_when_their_code_is_dropped(hw):
    """A conv built for its generated code keeps that code's way of meeting the padding when the
    weight budget drops the code: the compressed kernel then reads the same input."""
    rng = np.random.default_rng(12)
    w = pruned(rng, (24, 8, 3, 3), 0.8)
    bias = rng.standard_normal(24).astype(np.float32)
    x = rng.standard_normal((1, 8, hw, hw)).astype(np.float32)
    op = _core.SparseConvOp(w, bias, [1, 1], [1, 1, 1, 1], [1, 1], [1, 8, hw, hw], "relu", 0.0, 0.0, "avx512",
                            False, False, True)
    assert op.generated_in_place == (hw == 16)
    outs = [((1, 24, hw, hw), np.float32)] + ([((op.workspace_floats,), np.float32)] if op.workspace_floats else [])
    want = np.maximum(ort_run(make_model([helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[1, 1, 1, 1])],
                                         [f32("x", [1, 8, hw, hw])], [f32("y", [1, 24, hw, hw])],
                                         {"W": w, "B": bias}), {"x": x})[0], 0)
    np.testing.assert_allclose(run_op(op, [x], outs)[0], want, rtol=1e-4, atol=1e-4)
    op.drop_generated()
    np.testing.assert_allclose(run_op(op, [x], outs)[0], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("active_isa", ISAS, indirect=True)
def test_strided_and_single_pixel_convs_keep_the_padded_copy(active_isa):
    """Implicit padding is for stride 1 over more than one output pixel: a strided conv reads
    phase planes, and one output pixel runs as a matrix-vector product that reads every tap."""
    w = pruned(np.random.default_rng(3), (8, 4, 3, 3), 0.5)
    def op(stride, hw):
        return _core.SparseConvOp(w, None, [stride, stride], [1, 1, 1, 1], [1, 1], [1, 4, hw, hw], "none", 0.0, 0.0,
                                  active_isa, False, False, False)
    assert op(1, 6).workspace_floats == 0
    assert op(2, 6).workspace_floats == 4 * 4 * 4 * 4  # four phase planes of 4 x 4 per channel
    assert op(1, 1).workspace_floats == 4 * 3 * 3


class _FakeOp:
    def __init__(self, nbytes, compressed):
        self.generated_bytes, self.releasable_bytes, self.released = nbytes, compressed, False

    def drop_generated(self):
        self.generated_bytes = self.releasable_bytes = 0

    def release_compressed(self):
        self.released = True


def test_weight_budget_drops_generated_code_saving_least_per_byte(monkeypatch):
    from sparseinfer.compiler import kernel_choice

    def choice(sparse_ms, generated_ms):
        return {"measured_ms": {"sparse": sparse_ms, "generated": generated_ms}, "chosen": "generated"}

    # each adds generated - compressed bytes; time saved per added byte: a 1.0 / 100, b 1.0 / 400, c 0.3 / 100
    a, b, c = _FakeOp(150, 50), _FakeOp(600, 200), _FakeOp(150, 50)
    layers = [(a, choice(2.0, 1.0)), (b, choice(2.0, 1.0)), (c, choice(1.0, 0.7))]
    monkeypatch.setenv("SPARSEINFER_WEIGHT_BUDGET", "0.5")
    # 1000 bytes now (compressed included), 700 once the kept layers free theirs: over 500
    assert kernel_choice.fit_weight_budget(layers, 1000, kernel_choice.weight_budget() * 1000) == 300
    assert [op.generated_bytes for op in (a, b, c)] == [150, 0, 150]  # b (0.0025 ms/B) went, then fits
    assert (a.released, b.released, c.released) == (True, False, True)
    assert layers[1][1]["chosen"] == "sparse" and "SPARSEINFER_WEIGHT_BUDGET=0.5" in layers[1][1]["reason"]
    assert layers[0][1]["chosen"] == layers[2][1]["chosen"] == "generated" and "reason" not in layers[0][1]
    monkeypatch.setenv("SPARSEINFER_WEIGHT_BUDGET", "0")
    a2, c2 = _FakeOp(150, 50), _FakeOp(150, 50)
    assert kernel_choice.fit_weight_budget([(a2, choice(2.0, 1.0)), (c2, choice(1.0, 0.7))], 500, 0) == 200
    assert a2.generated_bytes == c2.generated_bytes == 0 and not (a2.released or c2.released)
    # Weighed per image: the same saving measured on a run of 4 images saves a quarter per image.
    d, e = _FakeOp(150, 50), _FakeOp(150, 50)
    assert kernel_choice.fit_weight_budget([(d, choice(2.0, 1.0)), (e, choice(2.0, 1.0))], 400, 250,
                                           images=[4, 1]) == 200
    assert d.generated_bytes == 0 and e.generated_bytes == 150 and e.released and not d.released
    monkeypatch.setenv("SPARSEINFER_WEIGHT_BUDGET", "lots")
    with pytest.raises(ValueError, match="SPARSEINFER_WEIGHT_BUDGET='lots': expected a number >= 0"):
        kernel_choice.weight_budget()


def test_single_nonzero_weight(monkeypatch):
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    rng = np.random.default_rng(1)
    model, feeds = conv_block(rng, 1, 8, 9, 9, 8, 3, 1, [1, 1, 1, 1], 1, sparsity=1.0, residual=False, act=False)
    w = np.zeros((8, 8, 3, 3), np.float32)
    w[5, 2, 0, 2] = 1.5
    from onnx import numpy_helper

    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "W"))
    engine = sparseinfer.compile_model(model)
    np.testing.assert_allclose(engine(**feeds)[0], ort_run(model, feeds)[0], rtol=1e-5, atol=1e-5)


def test_auto_choice_is_measured_and_reported(monkeypatch):
    monkeypatch.delenv("SPARSEINFER_KERNELS", raising=False)
    rng = np.random.default_rng(2)
    model, feeds = conv_block(rng, 1, 64, 28, 28, 64, 1, 1, [0, 0, 0, 0], 1, sparsity=0.95, residual=False,
                              act=True)
    engine = sparseinfer.compile_model(model)
    choice = next(r.choice for r in engine.node_report if r.op == "FusedConv")
    assert choice["weight_sparsity"] == pytest.approx(0.95, abs=1e-3)
    kernels = {"dense", "sparse"} | ({"generated"} if _core.active_isa() == "avx512" else set())
    assert set(choice["measured_ms"]) == set(choice["weights_ms"]) == kernels
    assert all(v > 0 for v in choice["measured_ms"].values()) and all(v > 0 for v in choice["weights_ms"].values())
    # reading the packed dense weights costs more than the compressed ones
    assert choice["weights_ms"]["dense"] > choice["weights_ms"]["sparse"]
    cost = {k: choice["measured_ms"][k] + choice["weights_ms"][k] for k in kernels}
    best = min(cost, key=cost.get)
    if best == "generated" and choice["chosen"] == "sparse":  # over the weight budget: said why
        assert "SPARSEINFER_WEIGHT_BUDGET" in choice["reason"]
    else:
        assert choice["chosen"] == best
    np.testing.assert_allclose(engine(**feeds)[0], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-4)


def test_dense_layers_are_not_timed(monkeypatch):
    monkeypatch.delenv("SPARSEINFER_KERNELS", raising=False)
    rng = np.random.default_rng(3)
    model, _ = conv_block(rng, 1, 16, 8, 8, 16, 3, 1, [1, 1, 1, 1], 1, sparsity=0.1, residual=False, act=False)
    choice = next(r.choice for r in sparseinfer.compile_model(model).node_report if r.op == "FusedConv")
    assert choice["chosen"] == "dense" and "measured_ms" not in choice


def test_dense_layer_read_by_sparse_convs_is_timed_with_its_output_reorder(monkeypatch):
    """A dense first layer (3 input channels, like VGG-16's) whose reader runs sparse: its
    candidates are timed (the dense one with its NCHWc output's reorder to the sparse layout)
    and the cheapest kept; a dense conv read by a pool is not timed."""
    monkeypatch.delenv("SPARSEINFER_KERNELS", raising=False)
    rng = np.random.default_rng(7)
    weights = {"W1": (rng.standard_normal((16, 3, 3, 3)) / 5).astype(np.float32),  # (fan-in scaled)
               "W2": pruned(rng, (16, 16, 3, 3), 0.9), "W3": (rng.standard_normal((16, 16, 3, 3)) / 12).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "W3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c3"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    model = make_model(nodes, [f32("x", [1, 3, 64, 64])], [f32("y", [1, 16, 32, 32])], weights)
    feeds = {"x": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)}
    engine = sparseinfer.compile_model(model)
    first, _, last = (r.choice for r in engine.node_report if r.op == "FusedConv")
    assert first["weight_sparsity"] == 0 and "sparse" in first["readers"]
    kernels = {"dense", "sparse"} | ({"generated"} if _core.active_isa() == "avx512" else set())
    assert set(first["measured_ms"]) == kernels
    assert first["chosen"] == min(kernels, key=lambda k: kernel_choice.cost_ms(first, k)) or "reason" in first
    assert last["chosen"] == "dense" and "measured_ms" not in last and "readers" not in last
    np.testing.assert_allclose(engine(**feeds)[0], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-4)


def test_convs_beyond_the_kernels_columns_stay_dense(monkeypatch):
    """C x R x S past the spmm's uint16 column indices: dense even when sparse is forced, and
    said; the op itself refuses such weights with the limit in the message."""
    from sparseinfer.compiler import lowering

    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    monkeypatch.setattr(lowering, "_SPMM_MAX_K", 71)
    rng = np.random.default_rng(5)
    model, feeds = conv_block(rng, 1, 8, 9, 9, 8, 3, 1, [1, 1, 1, 1], 1, sparsity=0.9, residual=False, act=True)
    engine = sparseinfer.compile_model(model)
    conv = next(r for r in engine.node_report if r.op == "FusedConv")
    assert conv.choice["chosen"] == "dense" and not conv.kernels[0].startswith("spmm")
    assert conv.choice["reason"] == "K = 72 weight columns exceed the sparse kernel's limit of 71"
    np.testing.assert_allclose(engine(**feeds)[0], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-4)
    c = _core.SPMM_MAX_K // 9 + 1  # C x 3 x 3 just past the limit
    w = np.zeros((1, c, 3, 3), np.float32)
    with pytest.raises(ValueError, match=f"C x R x S = {c * 9} weight columns exceed the spmm kernel's limit"):
        _core.SparseConvOp(w, None, [1, 1], [1, 1, 1, 1], [1, 1], [1, c, 4, 4], "none", 0.0, 0.0,
                           _core.active_isa(), False)


def test_bad_kernel_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SPARSEINFER_KERNELS", "fastest")
    rng = np.random.default_rng(4)
    model, _ = conv_block(rng, 1, 4, 6, 6, 4, 1, 1, [0, 0, 0, 0], 1, sparsity=0.5, residual=False, act=False)
    with pytest.raises(ValueError, match="SPARSEINFER_KERNELS='fastest': expected one of auto, dense, sparse"):
        sparseinfer.compile_model(model)


@pytest.mark.parametrize("active_isa", ISAS, indirect=True)
@pytest.mark.parametrize("n", [1, 3])  # plain NCHW, then channel-major (CNHW) batches
def test_pools_between_sparse_convs_need_no_reorder(n, active_isa, monkeypatch):
    """MaxPool and AveragePool between two sparse convs run on the convs' own layout (block 1,
    every ISA's instantiation), with no reorder to NCHWc and back, and match ONNX Runtime."""
    monkeypatch.setenv("SPARSEINFER_KERNELS", "sparse")
    monkeypatch.setenv("SPARSEINFER_BATCHING", "batched")  # one CNHW plan, not single-image streams
    rng = np.random.default_rng(6)
    weights = {"W1": pruned(rng, (12, 5, 3, 3), 0.8), "W2": pruned(rng, (7, 12, 1, 1), 0.8)}
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["p2", "W2"], ["y"]),
    ]
    model = make_model(nodes, [f32("x", [n, 5, 19, 17])], [f32("y", [n, 7, 5, 5])], weights)
    feeds = {"x": rng.standard_normal((n, 5, 19, 17)).astype(np.float32)}
    engine = sparseinfer.compile_model(model, batch_size=n)
    kernels = [r["kernel"] for r in engine._default.profile([feeds["x"]], repeats=1)]  # every plan step
    assert sum(k.startswith("spmm_conv") for k in kernels) == 2 and any("pool" in k for k in kernels), kernels
    assert not any("reorder" in k for k in kernels), kernels
    np.testing.assert_allclose(engine(**feeds)[0], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-4)
