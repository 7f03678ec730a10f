"""Magnitude pruning primitives: pure functions on tensors, plus one helper applying them to
chosen modules of a model.

* :func:`unstructured_mask` keeps all but exactly ``round(sparsity * numel)`` weights of a
  tensor, removing the smallest magnitudes (ties broken by flat index, so the result is
  deterministic).
* :func:`block_mask` removes whole blocks of ``block`` consecutive weights along the reduction
  dimension (input channels of a Conv weight ``(O, I, kh, kw)`` at each ``(o, kh, kw)``, input
  features of a Linear weight ``(out, in)``), scoring each block by its L2 norm and removing
  exactly ``round(sparsity * num_blocks)`` of them. This is the layout int8 VNNI kernels need.
* :func:`prune_modules` applies one of them to the ``weight`` of named modules in place and
  reports what it did per module.

Masks are boolean tensors of the weight's shape, ``True`` where the weight is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
import torch

Structure = Literal["unstructured", "block4"]


def smallest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask (same shape as ``scores``) selecting exactly the ``k`` smallest entries.

    Ties at the threshold are broken by flat index (lower index selected first), so the
    selection is deterministic. ``k`` is clamped to ``[0, numel]``. O(numel) (a partition, not
    a sort)."""
    flat = scores.detach().reshape(-1).cpu().numpy()
    n = flat.size
    k = max(0, min(int(k), n))
    if k == 0:
        return torch.zeros(scores.shape, dtype=torch.bool)
    if k == n:
        return torch.ones(scores.shape, dtype=torch.bool)
    threshold = np.partition(flat, k - 1)[k - 1]
    selected = flat < threshold
    need = k - int(np.count_nonzero(selected))
    if need > 0:
        selected[np.flatnonzero(flat == threshold)[:need]] = True
    return torch.from_numpy(selected).reshape(scores.shape)


def unstructured_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask removing exactly ``round(sparsity * numel)`` smallest-magnitude weights."""
    _check_sparsity(sparsity)
    k = round(sparsity * weight.numel())
    return ~smallest_k(weight.detach().abs(), k)


def block_mask(weight: torch.Tensor, sparsity: float, block: int = 4, dim: int = 1) -> torch.Tensor:
    """Keep-mask removing whole blocks of ``block`` consecutive weights along ``dim``.

    ``dim`` is the reduction dimension (1 for PyTorch Conv ``(O, I, ...)`` and Linear
    ``(out, in)`` weights). Blocks are scored by L2 norm; exactly
    ``round(sparsity * num_blocks)`` lowest-scoring blocks are removed.
    Raises ValueError when ``weight.shape[dim]`` is not a multiple of ``block``."""
    _check_sparsity(sparsity)
    dim = dim % weight.dim()
    size = weight.shape[dim]
    if size % block:
        raise ValueError(f"dimension {dim} of size {size} is not a multiple of the block size {block}")
    moved = weight.detach().movedim(dim, -1)  # (..., I)
    blocks = moved.reshape(*moved.shape[:-1], size // block, block)
    scores = blocks.to(torch.float64).pow(2).sum(-1).sqrt()
    pruned = smallest_k(scores, round(sparsity * scores.numel()))
    keep = (~pruned).unsqueeze(-1).expand_as(blocks).reshape(moved.shape)
    return keep.movedim(-1, dim).contiguous()


def make_mask(weight: torch.Tensor, sparsity: float, structure: Structure = "unstructured") -> torch.Tensor:
    """Dispatches to :func:`unstructured_mask` or :func:`block_mask` (block 4, reduction dim 1)."""
    if structure == "unstructured":
        return unstructured_mask(weight, sparsity)
    if structure == "block4":
        return block_mask(weight, sparsity, block=4, dim=1)
    raise ValueError(f"unknown pruning structure {structure!r}; expected 'unstructured' or 'block4'")


def sparsity_of(tensor: torch.Tensor) -> float:
    """Fraction of exact zeros in a tensor."""
    return 1.0 - int(torch.count_nonzero(tensor)) / max(1, tensor.numel())


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_modules` did to one module."""

    name: str
    shape: tuple[int, ...]
    pruned: bool
    sparsity: float
    note: str = ""


def prune_modules(model: torch.nn.Module, names: Iterable[str], sparsity: float,
                  structure: Structure = "unstructured", fill_kept_zeros: bool = True) -> list[PruneResult]:
    """Prunes the ``weight`` of each named module of ``model`` in place to ``sparsity``.

    For ``block4``, modules whose reduction dimension (per group, for grouped convs) is not a
    multiple of 4 are left dense and reported with a note; with ``fill_kept_zeros``, weights that
    are exactly zero inside a kept block (rare, natural zeros) are set to the smallest normal
    float so that every aligned block is either all zero or has no zero. Returns one result per
    name."""
    modules = dict(model.named_modules())
    results = []
    for name in names:
        weight = modules[name].weight
        shape = tuple(weight.shape)
        if structure == "block4" and weight.dim() >= 2 and shape[1] % 4:
            results.append(PruneResult(name, shape, False, sparsity_of(weight),
                                       f"left dense: reduction dimension {shape[1]} is not a multiple of 4"))
            continue
        mask = make_mask(weight, sparsity, structure)
        with torch.no_grad():
            weight.mul_(mask.to(weight.dtype))
            if structure == "block4" and fill_kept_zeros:
                # A kept block holding an exact zero would read back as a partial block; make the
                # structure recoverable from the weights alone with the smallest normal float.
                weight.masked_fill_(mask & (weight == 0), torch.finfo(weight.dtype).tiny)
        results.append(PruneResult(name, shape, True, sparsity_of(weight)))
    return results


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
