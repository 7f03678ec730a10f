"""Recipe modifiers and their registry by YAML name.

A modifier is a dataclass whose fields are exactly the keys a recipe may give it; the recipe
parser (:mod:`.recipe`) checks names and types against these fields, then calls
:meth:`Modifier.validate`. Pruning modifiers are bound to a model with :meth:`bind` and asked
for their masks at an epoch with :meth:`masks_at`; learning-rate modifiers answer
:meth:`lr_at`.

=========================  ===========================================================
YAML name                  what it does
=========================  ===========================================================
GMPruningModifier          gradual magnitude pruning init -> final sparsity (cubic)
ConstantPruningModifier    holds the current zeros of the params (fine-tuning)
BlockPruningModifier       GMP with blocks of 4 along the reduction dim (VNNI int8)
LearningRateModifier       lr function (step/exponential/cosine/linear/constant)
SetLearningRateModifier    sets a fixed learning rate from ``start_epoch``
EpochRangeModifier         declares the training length (``end_epoch``)
=========================  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from sparseinfer.sparsify import schedule
from sparseinfer.sparsify.errors import RecipeError
from sparseinfer.sparsify.masks import compute_masks, select_params

REGISTRY: dict[str, type["Modifier"]] = {}


def register(cls: type["Modifier"]) -> type["Modifier"]:
    """Registers a modifier class under its class name (the YAML name)."""
    REGISTRY[cls.__name__] = cls
    return cls


@dataclass
class Modifier:
    """Base of all modifiers: active from ``start_epoch`` to ``end_epoch`` (-1: to the end)."""

    start_epoch: float = 0.0
    end_epoch: float = -1.0
    path: str = field(default="", repr=False, compare=False)  # where in the recipe (for errors)

    kind: ClassVar[str] = "other"

    def validate(self) -> None:
        """Raises :class:`RecipeError` when the fields are inconsistent."""
        if self.start_epoch < 0:
            self._fail("start_epoch", f"must be >= 0, got {self.start_epoch}")
        if self.end_epoch >= 0 and self.end_epoch < self.start_epoch:
            self._fail("end_epoch", f"must be >= start_epoch ({self.start_epoch}) or -1, got {self.end_epoch}")

    def _fail(self, fieldname: str, message: str) -> None:
        raise RecipeError(f"{self.path}.{fieldname}" if self.path else fieldname, message)

    @property
    def last_epoch(self) -> float:
        """The last epoch this modifier needs (its end, or its start when open-ended)."""
        return self.end_epoch if self.end_epoch >= 0 else self.start_epoch


@register
@dataclass
class EpochRangeModifier(Modifier):
    """Declares the number of training epochs (``end_epoch``); does nothing else."""

    def validate(self) -> None:
        super().validate()
        if self.end_epoch <= self.start_epoch:
            self._fail("end_epoch", f"must be > start_epoch ({self.start_epoch}), got {self.end_epoch}")


# ---- pruning ----------------------------------------------------------------------------------
@dataclass
class PruningModifier(Modifier):
    """Common part of the pruning modifiers: which parameters (``params``: exact names,
    ``re:REGEX`` or ``__ALL_PRUNABLE__``; minus ``ignore``) and whether masks stay after
    ``end_epoch`` (``leave_enabled``)."""

    params: list[str] = field(default_factory=lambda: ["__ALL_PRUNABLE__"])
    ignore: list[str] = field(default_factory=list)
    leave_enabled: bool = True

    kind: ClassVar[str] = "pruning"

    def __post_init__(self) -> None:
        self.names: list[str] = []
        self._masks: dict[str, torch.Tensor] = {}

    def validate(self) -> None:
        super().validate()
        if not self.params:
            self._fail("params", "must list at least one parameter name or 're:REGEX'")

    def bind(self, model: torch.nn.Module) -> list[str]:
        """Resolves ``params`` against ``model``; raises :class:`RecipeError` for a pattern that
        matches no parameter. Returns the chosen parameter names."""
        names, unmatched = select_params(model, self.params, self.ignore)
        if unmatched:
            available = ", ".join(n for n, _ in model.named_parameters())
            field_ = "params" if unmatched[0] in self.params else "ignore"
            self._fail(field_, f"{unmatched[0]!r} matches no parameter of the model; its parameters are: {available}")
        if not names:
            self._fail("params", "every matched parameter is excluded by 'ignore'; nothing to prune")
        self.names = names
        self._params = dict(model.named_parameters())
        self._masks = {}
        return names

    def _weights(self) -> dict[str, torch.Tensor]:
        return {n: self._params[n].detach() for n in self.names}

    def active(self, epoch: float) -> bool:
        """Whether masks apply at ``epoch``."""
        if epoch < self.start_epoch - 1e-9:
            return False
        return self.leave_enabled or self.end_epoch < 0 or epoch < self.end_epoch

    def masks_at(self, epoch: float) -> dict[str, torch.Tensor]:
        """Keep-masks at ``epoch`` (empty when inactive); recomputed when the target changes."""
        raise NotImplementedError


@register
@dataclass
class GMPruningModifier(PruningModifier):
    """Gradual magnitude pruning from ``init_sparsity`` at ``start_epoch`` to ``final_sparsity``
    at ``end_epoch``, updated every ``update_frequency`` epochs along ``inter_func`` (cubic, as
    Zhu & Gupta, or linear), per layer or with one global threshold (``scope``)."""

    init_sparsity: float = 0.05
    final_sparsity: float = 0.9
    end_epoch: float = 10.0
    update_frequency: float = 1.0
    inter_func: str = "cubic"
    scope: str = "layer"
    structure: str = "unstructured"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._target: float | None = None

    def validate(self) -> None:
        super().validate()
        for name in ("init_sparsity", "final_sparsity"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                self._fail(name, f"must be in [0, 1), got {value}")
        if self.final_sparsity < self.init_sparsity:
            self._fail("final_sparsity", f"must be >= init_sparsity ({self.init_sparsity}), got {self.final_sparsity}")
        if self.end_epoch <= self.start_epoch:
            self._fail("end_epoch", f"must be > start_epoch ({self.start_epoch}), got {self.end_epoch}")
        if self.update_frequency <= 0:
            self._fail("update_frequency", f"must be > 0 epochs, got {self.update_frequency}")
        for name, choices in (("inter_func", ("cubic", "linear")), ("scope", ("layer", "global")),
                              ("structure", ("unstructured", "block4"))):
            if getattr(self, name) not in choices:
                self._fail(name, f"expected one of {list(choices)}, got {getattr(self, name)!r}")

    def bind(self, model: torch.nn.Module) -> list[str]:
        names = super().bind(model)
        self._target = None
        if self.structure == "block4":
            for n in names:
                shape = tuple(self._params[n].shape)
                if len(shape) < 2 or shape[1] % 4:
                    self._fail("params", f"parameter {n!r} of shape {shape} cannot be block4-pruned: "
                                         "expected at least 2 dims and dim 1 a multiple of 4 (add it to 'ignore')")
        return names

    def target_at(self, epoch: float) -> float | None:
        """The scheduled sparsity at ``epoch`` (None before ``start_epoch``)."""
        return schedule.gmp_sparsity(epoch, self.start_epoch, self.end_epoch, self.init_sparsity,
                                     self.final_sparsity, self.update_frequency, self.inter_func)  # type: ignore[arg-type]

    def masks_at(self, epoch: float) -> dict[str, torch.Tensor]:
        if not self.active(epoch):
            return {}
        target = self.target_at(epoch)
        if target is not None and target != self._target:
            self._masks = compute_masks(self._weights(), target, self.scope, self.structure)  # type: ignore[arg-type]
            self._target = target
        return self._masks

    def final_masks(self) -> dict[str, torch.Tensor]:
        """Masks at ``final_sparsity`` from the current weights (one-shot pruning)."""
        self._masks = compute_masks(self._weights(), self.final_sparsity, self.scope, self.structure)  # type: ignore[arg-type]
        self._target = self.final_sparsity
        return self._masks


@register
@dataclass
class BlockPruningModifier(GMPruningModifier):
    """:class:`GMPruningModifier` with ``structure: block4`` (zeros in aligned blocks of 4 along
    the reduction dimension, as int8 VNNI kernels need)."""

    structure: str = "block4"

    def validate(self) -> None:
        super().validate()
        if self.structure != "block4":
            self._fail("structure", f"BlockPruningModifier prunes blocks of 4: expected 'block4', got {self.structure!r}")


@register
@dataclass
class ConstantPruningModifier(PruningModifier):
    """Holds the zeros the params have at ``start_epoch`` (e.g. of a pruned model being
    fine-tuned): masks are ``weight != 0`` then, applied after every optimizer step."""

    def masks_at(self, epoch: float) -> dict[str, torch.Tensor]:
        if not self.active(epoch):
            return {}
        if not self._masks:
            self._masks = {n: w != 0 for n, w in self._weights().items()}
        return self._masks

    def final_masks(self) -> dict[str, torch.Tensor]:
        """The current zeros as masks (one-shot: nothing new is pruned)."""
        self._masks = {n: w != 0 for n, w in self._weights().items()}
        return self._masks


# ---- learning rate ----------------------------------------------------------------------------
@register
@dataclass
class LearningRateModifier(Modifier):
    """Sets the optimizer's learning rate from ``start_epoch`` by ``lr_func``: ``constant``,
    ``step`` (x ``gamma`` every ``step_size`` epochs), ``exponential`` (x ``gamma`` per epoch),
    ``cosine`` or ``linear`` (``init_lr`` -> ``final_lr`` over [start, end])."""

    lr_func: str = "cosine"
    init_lr: float = 0.01
    final_lr: float = 0.0
    step_size: float = 1.0
    gamma: float = 0.1

    kind: ClassVar[str] = "lr"

    def validate(self) -> None:
        super().validate()
        funcs = ("constant", "step", "exponential", "cosine", "linear")
        if self.lr_func not in funcs:
            self._fail("lr_func", f"expected one of {list(funcs)}, got {self.lr_func!r}")
        if self.init_lr <= 0:
            self._fail("init_lr", f"must be > 0, got {self.init_lr}")
        if self.final_lr < 0:
            self._fail("final_lr", f"must be >= 0, got {self.final_lr}")
        if self.lr_func in ("cosine", "linear") and self.end_epoch <= self.start_epoch:
            self._fail("end_epoch", f"lr_func {self.lr_func!r} needs end_epoch > start_epoch ({self.start_epoch}), "
                                    f"got {self.end_epoch}")
        if self.lr_func == "step" and self.step_size <= 0:
            self._fail("step_size", f"must be > 0, got {self.step_size}")

    def lr_at(self, epoch: float) -> float | None:
        """The learning rate at ``epoch`` (None before ``start_epoch``)."""
        if epoch < self.start_epoch - 1e-9:
            return None
        return schedule.learning_rate(epoch, self.lr_func, self.init_lr, self.start_epoch, self.end_epoch,  # type: ignore[arg-type]
                                      self.final_lr, self.step_size, self.gamma)


@register
@dataclass
class SetLearningRateModifier(Modifier):
    """Sets the learning rate to ``learning_rate`` from ``start_epoch`` on."""

    learning_rate: float = 0.001

    kind: ClassVar[str] = "lr"

    def validate(self) -> None:
        super().validate()
        if self.learning_rate <= 0:
            self._fail("learning_rate", f"must be > 0, got {self.learning_rate}")

    def lr_at(self, epoch: float) -> float | None:
        """``learning_rate`` from ``start_epoch`` on, else None."""
        return self.learning_rate if epoch >= self.start_epoch - 1e-9 else None
