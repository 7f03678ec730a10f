"""RecipeManager: applies a recipe to the user's model and optimizer from their own loop.

::

    manager = RecipeManager.from_yaml("recipe.yaml")
    optimizer = manager.wrap(model, optimizer, steps_per_epoch=len(loader))
    for epoch in range(manager.max_epochs):
        for x, y in loader:
            optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
    manager.finalize(model)

``wrap`` registers optimizer step hooks (the optimizer object is returned unchanged). Before each
step the manager sets the learning rate, updates the masks when the schedule says so and zeroes
the gradients of pruned weights; after each step it multiplies the weights by their masks and
zeroes the optimizer state (momentum, Adam moments) of pruned weights, so no optimizer can bring
a pruned weight back. ``finalize`` removes the hooks and leaves plain tensors with exact zeros.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from sparseinfer.sparsify.magnitude import sparsity_of
from sparseinfer.sparsify.modifiers import PruningModifier
from sparseinfer.sparsify.recipe import Recipe, load_recipe


@dataclass(frozen=True)
class ParamSparsity:
    """Sparsity of one parameter after :meth:`RecipeManager.finalize` or one-shot pruning."""

    name: str
    shape: tuple[int, ...]
    sparsity: float


class RecipeManager:
    """Runs the modifiers of a :class:`Recipe` against a model and optimizer."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.step_count = 0
        self.steps_per_epoch = 0
        self._model: torch.nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._handles: list[Any] = []
        self._params: dict[str, torch.nn.Parameter] = {}
        self.masks: dict[str, torch.Tensor] = {}

    @classmethod
    def from_yaml(cls, source: str | os.PathLike, overrides: dict[str, Any] | None = None) -> "RecipeManager":
        """A manager for a recipe file path, builtin recipe name or YAML text; ``overrides``
        replace the recipe's top-level variables."""
        return cls(load_recipe(source, overrides))

    @property
    def pruning_modifiers(self) -> list[PruningModifier]:
        return self.recipe.of_kind("pruning")  # type: ignore[return-value]

    @property
    def max_epochs(self) -> int:
        """Training epochs the recipe implies (its last epoch, rounded up)."""
        return int(math.ceil(self.recipe.max_epochs))

    @property
    def epoch(self) -> float:
        """The current fractional epoch (steps taken / steps per epoch)."""
        return self.step_count / self.steps_per_epoch if self.steps_per_epoch else 0.0

    # ---- binding ------------------------------------------------------------------------------
    def bind(self, model: torch.nn.Module) -> None:
        """Resolves every pruning modifier's params against ``model`` (raises RecipeError when a
        pattern matches nothing)."""
        for mod in self.pruning_modifiers:
            mod.bind(model)
        self._model = model
        self._params = dict(model.named_parameters())

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             steps_per_epoch: int) -> torch.optim.Optimizer:
        """Binds the recipe to ``model`` and hooks ``optimizer.step``; returns the optimizer.

        ``steps_per_epoch`` (optimizer steps per epoch, usually ``len(loader)``) converts steps
        into the fractional epochs the recipe speaks in."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if self._handles:
            raise RuntimeError("this manager already wraps an optimizer; call finalize() first")
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        self.bind(model)
        missing = [n for mod in self.pruning_modifiers for n in mod.names if id(self._params[n]) not in owned]
        if missing:
            raise ValueError(f"pruned parameters {missing[:3]} are not in the optimizer's param groups; "
                             "expected the optimizer to own every parameter the recipe prunes")
        self.steps_per_epoch = int(steps_per_epoch)
        self.step_count = 0
        self._optimizer = optimizer
        self._handles = [optimizer.register_step_pre_hook(self._pre_step),
                         optimizer.register_step_post_hook(self._post_step)]
        return optimizer

    # ---- stepping -----------------------------------------------------------------------------
    def update(self, epoch: float | None = None) -> None:
        """Brings masks and learning rate to ``epoch`` (default: the current one) and applies
        the masks to the weights. Called by the pre-step hook; callable by hand."""
        epoch = self.epoch if epoch is None else epoch
        masks: dict[str, torch.Tensor] = {}
        for mod in self.pruning_modifiers:
            for name, mask in mod.masks_at(epoch).items():
                masks[name] = mask & masks[name] if name in masks else mask
        self.masks = masks
        if self._optimizer is not None:
            for mod in self.recipe.of_kind("lr"):
                lr = mod.lr_at(epoch)  # type: ignore[attr-defined]
                if lr is not None:
                    for group in self._optimizer.param_groups:
                        group["lr"] = lr
        self.apply_masks()

    def apply_masks(self) -> None:
        """Zeroes the pruned weights and their gradients and optimizer state."""
        state = self._optimizer.state if self._optimizer is not None else {}
        with torch.no_grad():
            for name, mask in self.masks.items():
                p = self._params[name]
                keep = mask.to(device=p.device, dtype=p.dtype)
                p.mul_(keep)
                if p.grad is not None:
                    p.grad.mul_(keep)
                for value in state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value.mul_(keep)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.update()

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.apply_masks()
        self.step_count += 1

    # ---- one-shot and finishing ---------------------------------------------------------------
    def one_shot(self, model: torch.nn.Module) -> list[ParamSparsity]:
        """Applies every pruning modifier at its final sparsity now, without training (GMP:
        ``final_sparsity``; constant pruning: the current zeros); returns the sparsities."""
        self.bind(model)
        masks: dict[str, torch.Tensor] = {}
        for mod in self.pruning_modifiers:
            for name, mask in mod.final_masks().items():  # type: ignore[attr-defined]
                masks[name] = mask & masks[name] if name in masks else mask
        self.masks = masks
        self.apply_masks()
        return self.finalize(model)

    def finalize(self, model: torch.nn.Module | None = None) -> list[ParamSparsity]:
        """Applies the masks a last time, removes the optimizer hooks and drops the masks.
        Returns the sparsity of every parameter the recipe pruned."""
        if self.masks:
            self.apply_masks()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        names = [n for mod in self.pruning_modifiers for n in mod.names]
        params = dict(model.named_parameters()) if model is not None else self._params
        report = [ParamSparsity(n, tuple(params[n].shape), sparsity_of(params[n].detach()))
                  for n in dict.fromkeys(names)]
        self.masks = {}
        self._optimizer = None
        return report


def overall_sparsity(report: list[ParamSparsity]) -> float:
    """Sparsity over all parameters of ``report`` together (weighted by their sizes)."""
    sizes = [math.prod(r.shape) for r in report]
    return sum(r.sparsity * n for r, n in zip(report, sizes)) / max(1, sum(sizes))


def one_shot_prune(model: torch.nn.Module, recipe: str | os.PathLike | Recipe) -> list[ParamSparsity]:
    """Prunes ``model`` in place to the final sparsities of ``recipe`` (path, builtin name, YAML
    text or :class:`Recipe`) without training; returns the per-parameter sparsities."""
    manager = RecipeManager(recipe if isinstance(recipe, Recipe) else load_recipe(recipe))
    return manager.one_shot(model)
