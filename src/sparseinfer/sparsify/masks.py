"""Choosing parameters by name or regex, and computing keep-masks per layer or globally.

Per-layer masks come from :func:`sparseinfer.sparsify.magnitude.make_mask`; global masks rank
all chosen tensors together (one magnitude threshold for all of them) with
:func:`sparseinfer.sparsify.magnitude.smallest_k`. Masks are boolean, ``True`` = kept.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal

import torch

from sparseinfer.sparsify.magnitude import Structure, make_mask, smallest_k

Scope = Literal["layer", "global"]

#: The ``params`` token choosing every Conv/Linear weight of the model.
ALL_PRUNABLE = "__ALL_PRUNABLE__"
_PRUNABLE_TYPES = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def prunable_params(model: torch.nn.Module) -> list[str]:
    """Names of the ``weight`` parameters of the Conv/Linear modules of ``model``."""
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, _PRUNABLE_TYPES)]


def pattern_matches(pattern: str, name: str, model_prunable: set[str]) -> bool:
    """Whether ``pattern`` chooses parameter ``name``: ``re:REGEX`` (full match), the token
    ``__ALL_PRUNABLE__`` (every Conv/Linear weight), or an exact name."""
    if pattern == ALL_PRUNABLE:
        return name in model_prunable
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name


def select_params(model: torch.nn.Module, patterns: Iterable[str],
                  ignore: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Parameter names of ``model`` chosen by ``patterns`` minus ``ignore`` (in model order),
    and the patterns that matched no parameter at all (for error messages)."""
    names = [n for n, _ in model.named_parameters()]
    prunable = set(prunable_params(model))
    patterns, ignore = list(patterns), list(ignore)
    unmatched = [p for p in patterns + ignore if not any(pattern_matches(p, n, prunable) for n in names)]
    chosen = [n for n in names if any(pattern_matches(p, n, prunable) for p in patterns)
              and not any(pattern_matches(p, n, prunable) for p in ignore)]
    return chosen, unmatched


def _block_scores(weight: torch.Tensor, block: int = 4) -> torch.Tensor:
    """L2 norms of blocks of ``block`` consecutive weights along dim 1, shape ``(..., I/block)``."""
    moved = weight.detach().movedim(1, -1)
    blocks = moved.reshape(*moved.shape[:-1], moved.shape[-1] // block, block)
    return blocks.to(torch.float64).pow(2).sum(-1).sqrt()


def _expand_blocks(keep_blocks: torch.Tensor, weight: torch.Tensor, block: int = 4) -> torch.Tensor:
    moved_shape = weight.movedim(1, -1).shape
    keep = keep_blocks.unsqueeze(-1).expand(*keep_blocks.shape, block).reshape(moved_shape)
    return keep.movedim(-1, 1).contiguous()


def compute_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: Scope = "layer",
                  structure: Structure = "unstructured") -> dict[str, torch.Tensor]:
    """Keep-masks for ``weights`` at ``sparsity``.

    ``layer``: each tensor gets exactly ``sparsity`` (of its weights or, for ``block4``, of its
    blocks of 4 along dim 1). ``global``: the smallest magnitudes (or block L2 norms) across all
    tensors together are removed, so layers end with different sparsities."""
    if scope == "layer":
        return {n: make_mask(w, sparsity, structure) for n, w in weights.items()}
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}; expected 'layer' or 'global'")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    if structure == "block4":
        scores = {n: _block_scores(w) for n, w in weights.items()}
    elif structure == "unstructured":
        scores = {n: w.detach().abs().to(torch.float64) for n, w in weights.items()}
    else:
        raise ValueError(f"unknown pruning structure {structure!r}; expected 'unstructured' or 'block4'")
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    pruned = smallest_k(flat, round(sparsity * flat.numel()))
    masks, offset = {}, 0
    for n, s in scores.items():
        keep = ~pruned[offset:offset + s.numel()].reshape(s.shape)
        offset += s.numel()
        masks[n] = _expand_blocks(keep, weights[n]) if structure == "block4" else keep
    return masks
