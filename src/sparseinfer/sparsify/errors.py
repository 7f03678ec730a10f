"""The exception the recipe machinery raises."""

from __future__ import annotations


class RecipeError(ValueError):
    """A recipe is malformed or does not fit the model. ``path`` locates the offending field,
    e.g. ``modifiers[1].GMPruningModifier.final_sparsity``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)
