"""The model zoo: reproducible dense, pruned and real-weight models, generated offline.

Every model is built from our own PyTorch definitions (:mod:`sparseinfer.zoo.architectures`) or
loaded from a package that ships real weights, then pruned and exported to ONNX into a cache
directory (``$SPARSEINFER_ZOO_DIR`` or ``~/.cache/sparseinfer/zoo``) with a model card.

Stubs ``zoo:NAME[-VARIANT]`` (variant defaults to ``dense``) are accepted wherever a model path
is: :func:`resolve` turns them into the local ONNX path, exporting on first use::

    >>> from sparseinfer import zoo
    >>> zoo.resolve("zoo:resnet50-pruned90")        # doctest: +SKIP
    '/home/me/.cache/sparseinfer/zoo/resnet50-pruned90/model.onnx'

Random-weight models are for speed measurement only and say so in their card; accuracy is only
ever claimed for real weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sparseinfer.zoo import registry
from sparseinfer.zoo.card import ModelCard
from sparseinfer.zoo import export as _export  # the module; the name `export` is the function below
from sparseinfer.zoo.export import GENERATOR_VERSION, TORCH_MISSING, ZooModel, cache_root
from sparseinfer.zoo.registry import ENTRIES, VARIANTS, InputSpec, ZooEntry
from sparseinfer.zoo.stub import Stub, ZooError, is_stub, parse

__all__ = ["ENTRIES", "GENERATOR_VERSION", "InputSpec", "ModelCard", "Stub", "VARIANTS", "ZooEntry",
           "ZooError", "ZooModel", "build_torch_model", "cache_root", "example_inputs", "export", "get",
           "is_stub", "list_models", "parse", "resolve", "variants"]


def list_models() -> list[ZooEntry]:
    """All zoo entries, in registry order."""
    return list(ENTRIES)


def get(name: str) -> ZooEntry:
    """The entry called ``name`` (a stub is accepted too). Raises :class:`ZooError`."""
    return parse(name).entry


def variants() -> list[str]:
    """The variants every entry has: ``dense``, ``pruned80``, ``pruned90``, ``pruned95``,
    ``pruned90-block4``."""
    return list(VARIANTS)


def export(stub_or_name: str, variant: str | None = None, cache_dir: str | os.PathLike | None = None,
           force: bool = False) -> ZooModel:
    """Exports ``zoo:NAME[-VARIANT]`` (or ``NAME`` with ``variant``) to ONNX and returns the
    :class:`ZooModel` (``path``, ``card``, ``entry``). A valid cached export is reused unless
    ``force``. Raises :class:`ZooError` for unknown names/variants or when PyTorch is missing."""
    return _export.export(stub_or_name, variant=variant, cache_dir=cache_dir, force=force)


def resolve(model: Any) -> Any:
    """Returns the local ONNX path (str) of a ``zoo:`` stub, exporting it on first use; any other
    value (path, bytes, ModelProto) is returned unchanged."""
    if is_stub(model):
        return str(export(model).path)
    return model


def build_torch_model(stub: str, variant: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The exact PyTorch model a stub exports (seeded, BN-calibrated, pruned), in eval mode, with
    example inputs (batch 1, as torch tensors, in the model's forward order: call
    ``model(*inputs.values())``)."""
    built = _export.build(stub, variant)
    torch = _export._torch()
    arrays = example_inputs(str(built.stub))
    order = _export._forward_order(built.model, built.stub.entry)
    return built.model, {n: torch.from_numpy(arrays[n]) for n in order}


def example_inputs(stub: str, batch_size: int = 1, seq_len: int | None = None,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded example inputs for a stub or name: images float32 N(0, 1); ``input_ids`` int64 in
    [0, vocab); ``attention_mask`` ones with the last tokens of random rows zero;
    ``token_type_ids`` zeros. Text defaults to sequence length 128."""
    return _export.make_inputs(parse(stub).entry, batch_size=batch_size, seq_len=seq_len, seed=seed)
