"""Sparsification toolkit: magnitude-pruning primitives (:mod:`.magnitude`), YAML recipes with
modifiers (:mod:`.recipe`, :mod:`.modifiers`), the :class:`RecipeManager` stepped from a
training loop, one-shot pruning, sensitivity analysis (:mod:`.sensitivity`) and ONNX export
with an engine check (:mod:`.export`).

The recipe parts need PyYAML: ``pip install 'sparseinfer[sparsify]'``.
"""

from sparseinfer.sparsify.magnitude import (PruneResult, block_mask, make_mask, prune_modules,
                                             smallest_k, sparsity_of, unstructured_mask)

__all__ = ["PruneResult", "block_mask", "make_mask", "prune_modules", "smallest_k", "sparsity_of",
           "unstructured_mask", "RecipeError", "Recipe", "load_recipe", "parse_recipe", "builtin_recipes",
           "RecipeManager", "one_shot_prune", "ParamSparsity"]

_LAZY = {
    "RecipeError": "sparseinfer.sparsify.errors",
    "Recipe": "sparseinfer.sparsify.recipe",
    "load_recipe": "sparseinfer.sparsify.recipe",
    "parse_recipe": "sparseinfer.sparsify.recipe",
    "builtin_recipes": "sparseinfer.sparsify.recipe",
    "RecipeManager": "sparseinfer.sparsify.manager",
    "one_shot_prune": "sparseinfer.sparsify.manager",
    "ParamSparsity": "sparseinfer.sparsify.manager",
}


def __getattr__(name: str):  # lazy: importing the zoo's primitives must not need PyYAML
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sparseinfer.sparsify' has no attribute {name!r}")
