"""Runs one plan op alone: a Plan whose input slots feed the op and whose output slots are
the op's outputs. Lets kernel tests drive the ops the compiler emits directly."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sparseinfer import _core
from sparseinfer.compiler.builder import PLAN_DTYPES

ISA_ORDER = ["portable", "avx2", "avx512"]


def supported(isa: str) -> bool:
    return ISA_ORDER.index(isa) <= ISA_ORDER.index(_core.best_isa())


def run_op(op, inputs: Sequence[np.ndarray], outputs: Sequence[tuple[Sequence[int], object]],
           num_threads: int = 1) -> list[np.ndarray]:
    """``outputs``: (shape, dtype) per output. Returns the op's outputs."""
    plan = _core.Plan(num_threads)
    inputs = [np.ascontiguousarray(x) for x in inputs]
    ins = [plan.add_input_slot(list(x.shape), PLAN_DTYPES[x.dtype]) for x in inputs]
    outs = [plan.add_output_slot(list(shape), PLAN_DTYPES[np.dtype(dtype)]) for shape, dtype in outputs]
    plan.add_op(op, ins, outs)
    plan.set_arena_size(0)
    return plan.run(inputs)
