"""Sparsification toolkit. For now: magnitude pruning primitives (see :mod:`.magnitude`)."""

from sparseinfer.sparsify.magnitude import (PruneResult, block_mask, make_mask, prune_modules,
                                             smallest_k, sparsity_of, unstructured_mask)

__all__ = ["PruneResult", "block_mask", "make_mask", "prune_modules", "smallest_k", "sparsity_of",
           "unstructured_mask"]
