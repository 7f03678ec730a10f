"""Export a pruned PyTorch model to ONNX with its zeros intact, and check it in the engine.

:func:`export_onnx` removes any leftover ``torch.nn.utils.prune`` reparametrisation (so the
graph has plain weights, no masks), exports with ``torch.onnx.export(dynamo=False)`` at opset 17
with a dynamic batch dimension, and reports the sparsity of the exported Conv/Gemm/MatMul
weights. :func:`check_in_engine` compiles the file with :func:`sparseinfer.compile_model` and
compares its outputs with PyTorch's.
"""

from __future__ import annotations

import io
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    """An exported model: its path and the sparsity of each exported weight initializer (rank >= 2)."""

    path: Path
    weight_sparsity: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineCheck:
    """Engine vs PyTorch on the same inputs."""

    max_abs_diff: float
    same_argmax: float  # fraction of rows whose argmax agrees (first output)
    ok: bool
    engine_ms: float | None = None  # median per run, when timed
    torch_ms: float | None = None


def remove_masks(model: torch.nn.Module) -> None:
    """Makes any ``torch.nn.utils.prune`` masks permanent (weights keep their zeros, the
    ``weight_orig``/``weight_mask`` pair and its forward hook go away)."""
    from torch.nn.utils import prune

    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)


def export_onnx(model: torch.nn.Module, example: torch.Tensor | Sequence[torch.Tensor], path: str | os.PathLike,
                input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                dynamic_axes: dict[str, dict[int, str]] | None = None) -> ExportResult:
    """Exports ``model`` (eval mode) to ``path`` as ONNX opset 17 with a dynamic batch dimension
    (or ``dynamic_axes`` when given, e.g. to make a sequence dimension dynamic too).

    ``example`` is one tensor or a sequence of tensors (batch first) used for tracing."""
    import onnx
    from onnx import numpy_helper

    args = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    if len(args) != len(input_names):
        raise ValueError(f"{len(args)} example inputs but {len(input_names)} input names {list(input_names)}")
    remove_masks(model)
    model.eval()
    dynamic = dynamic_axes or {n: {0: "batch"} for n in [*input_names, *output_names]}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                          input_names=list(input_names), output_names=list(output_names), dynamic_axes=dynamic)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    sparsity = {}
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim >= 2 and arr.dtype == np.float32:
            sparsity[init.name] = float(1.0 - np.count_nonzero(arr) / arr.size)
    return ExportResult(path, sparsity)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def check_in_engine(path: str | os.PathLike, model: torch.nn.Module, inputs: Sequence[np.ndarray],
                    rtol: float = 1e-4, atol: float = 1e-4, num_cores: int | None = None,
                    time_repeats: int = 0) -> EngineCheck:
    """Runs the exported model at ``path`` in the engine and ``model`` in PyTorch on ``inputs``;
    ``ok`` when every output agrees within ``rtol``/``atol``. With ``time_repeats > 0`` both are
    also timed (alternating in the same run, medians, same thread count)."""
    import sparseinfer

    arrays = [np.ascontiguousarray(a) for a in inputs]
    # The inputs' own shapes fix every symbolic dimension (batch, and e.g. the sequence length).
    engine = sparseinfer.compile_model(str(path), batch_size=arrays[0].shape[0], num_cores=num_cores,
                                       input_shapes=[a.shape for a in arrays])
    got = engine.run(arrays)
    model.eval()
    tensors = [torch.from_numpy(a) for a in arrays]
    with torch.no_grad():
        ref = model(*tensors)
    refs = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]
    if len(refs) != len(got):
        raise ValueError(f"the engine returns {len(got)} outputs, PyTorch {len(refs)}; expected the same")
    ok = all(np.allclose(g, r, rtol=rtol, atol=atol) for g, r in zip(got, refs))
    diff = max(float(np.max(np.abs(g - r))) if g.size else 0.0 for g, r in zip(got, refs))
    agree = float(np.mean(np.argmax(got[0].reshape(len(got[0]), -1), 1) == np.argmax(refs[0].reshape(len(refs[0]), -1), 1)))
    engine_ms = torch_ms = None
    if time_repeats > 0:
        threads = torch.get_num_threads()
        torch.set_num_threads(engine.num_cores)
        try:
            with torch.no_grad():
                engine_ms = _median_ms(lambda: engine.run(arrays), time_repeats)
                torch_ms = _median_ms(lambda: model(*tensors), time_repeats)
        finally:
            torch.set_num_threads(threads)
    return EngineCheck(diff, agree, ok, engine_ms, torch_ms)
