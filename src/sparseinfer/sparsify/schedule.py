"""Schedule math: pure functions of the (fractional) epoch, no PyTorch.

* :func:`gmp_sparsity` is the gradual magnitude pruning schedule of Zhu & Gupta (2017):
  ``s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3`` for ``t0 <= t < t1``,
  with ``t`` snapped down to the last update point ``t0 + k * update_frequency``;
  ``s_i`` before ``t0`` is not applied at all (``None``), and ``s_f`` from ``t1`` on.
* :func:`learning_rate` evaluates the learning-rate functions of the LR modifiers.
"""

from __future__ import annotations

import math
from typing import Literal

Interpolation = Literal["cubic", "linear"]
LRFunction = Literal["step", "exponential", "cosine", "linear", "constant"]

_EPS = 1e-9


def interpolate(progress: float, init: float, final: float, kind: Interpolation = "cubic") -> float:
    """Value at ``progress`` in [0, 1] going from ``init`` to ``final``.

    ``cubic`` is Zhu & Gupta's ``final + (init - final) * (1 - progress) ** 3`` (fast at first,
    slow at the end); ``linear`` is the straight line."""
    p = min(1.0, max(0.0, float(progress)))
    if kind == "cubic":
        return final + (init - final) * (1.0 - p) ** 3
    if kind == "linear":
        return init + (final - init) * p
    raise ValueError(f"unknown interpolation {kind!r}; expected 'cubic' or 'linear'")


def update_point(epoch: float, start: float, update_frequency: float) -> float:
    """The last update point ``start + k * update_frequency`` at or before ``epoch``."""
    if update_frequency <= 0:
        return epoch
    k = math.floor((epoch - start) / update_frequency + _EPS)
    return start + k * update_frequency


def gmp_sparsity(epoch: float, start: float, end: float, init: float, final: float,
                 update_frequency: float, kind: Interpolation = "cubic") -> float | None:
    """Target sparsity of gradual magnitude pruning at ``epoch`` (``None`` before ``start``).

    The sparsity changes only at update points ``start + k * update_frequency`` and reaches
    ``final`` exactly at ``end``."""
    if end <= start:
        raise ValueError(f"end epoch {end} must be after start epoch {start}")
    if epoch < start - _EPS:
        return None
    if epoch >= end - _EPS:
        return final
    t = update_point(epoch, start, update_frequency)
    return interpolate((t - start) / (end - start), init, final, kind)


def learning_rate(epoch: float, function: LRFunction, init_lr: float, start: float = 0.0,
                  end: float = -1.0, final_lr: float = 0.0, step_size: float = 1.0,
                  gamma: float = 0.1) -> float:
    """Learning rate at ``epoch`` for a schedule active from ``start`` to ``end`` (``end < 0``:
    until training stops; only ``step``, ``exponential`` and ``constant`` allow that).

    * ``constant``: ``init_lr``
    * ``step``: ``init_lr * gamma ** floor((epoch - start) / step_size)``
    * ``exponential``: ``init_lr * gamma ** (epoch - start)``
    * ``cosine``: from ``init_lr`` to ``final_lr`` along half a cosine over [start, end]
    * ``linear``: from ``init_lr`` to ``final_lr`` linearly over [start, end]"""
    t = max(0.0, epoch - start)
    if function == "constant":
        return init_lr
    if function == "step":
        if step_size <= 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        return init_lr * gamma ** math.floor(t / step_size + _EPS)
    if function == "exponential":
        return init_lr * gamma ** t
    if function in ("cosine", "linear"):
        if end <= start:
            raise ValueError(f"the {function} learning-rate function needs end_epoch > start_epoch, "
                             f"got start {start}, end {end}")
        p = min(1.0, t / (end - start))
        if function == "cosine":
            return final_lr + 0.5 * (init_lr - final_lr) * (1.0 + math.cos(math.pi * p))
        return init_lr + (final_lr - init_lr) * p
    raise ValueError(f"unknown learning-rate function {function!r}; expected one of "
                     "'constant', 'step', 'exponential', 'cosine', 'linear'")
