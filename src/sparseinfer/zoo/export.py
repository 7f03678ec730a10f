"""Build -> calibrate -> prune -> export -> card, with an on-disk cache.

Layout: ``<cache>/<name>-<variant>/model.onnx`` and ``card.json``, where ``<cache>`` is
``$SPARSEINFER_ZOO_DIR`` or ``~/.cache/sparseinfer/zoo``. A cache entry is used when its card
has the current :data:`GENERATOR_VERSION` and the file's sha256 matches the card.

Determinism: ``torch.manual_seed(crc32(name))`` before building; BatchNorm parameters and the
calibration batches come from generators seeded from the same number. The ONNX bytes are
identical across exports in the same environment (same torch/onnx versions and thread count).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import inspect
import io
import os
import uuid
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseinfer.zoo import registry
from sparseinfer.zoo.card import ModelCard
from sparseinfer.zoo.stub import Stub, ZooError, parse

#: Bump whenever generation changes (architectures, recipe, calibration, export settings).
GENERATOR_VERSION = 1
OPSET = 17
ENV_VAR = "SPARSEINFER_ZOO_DIR"
#: gzip -9 of a pruned model takes minutes for the big ones (zlib's longest match search on
#: long zero runs); ``SPARSEINFER_ZOO_GZIP=0`` skips it (the card then says null), e.g. in tests.
GZIP_ENV_VAR = "SPARSEINFER_ZOO_GZIP"
TORCH_MISSING = "the zoo builds models with PyTorch: pip install 'sparseinfer[zoo]'"
CALIBRATION_BATCHES = 2


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The zoo cache directory: ``override``, else ``$SPARSEINFER_ZOO_DIR``, else
    ``~/.cache/sparseinfer/zoo``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "sparseinfer" / "zoo"


def seed_for(name: str) -> int:
    """The stable seed of an entry: crc32 of its name."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ZooError(TORCH_MISSING) from exc
    return torch


# ---- example inputs ---------------------------------------------------------------------------
def make_inputs(entry: registry.ZooEntry, batch_size: int = 1, seq_len: int | None = None,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Example inputs for ``entry`` (see :class:`registry.InputSpec` for the value ranges)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    seq = int(seq_len) if seq_len is not None else 128
    out: dict[str, np.ndarray] = {}
    for spec in entry.inputs:
        shape = tuple(batch_size if d == "batch" else seq if d == "sequence" else int(d) for d in spec.shape)
        if spec.kind == "normal":
            arr = rng.standard_normal(shape, dtype=np.float32)
        elif spec.kind == "token_ids":
            arr = rng.integers(0, spec.high, size=shape, dtype=np.int64)
        elif spec.kind == "mask":
            arr = np.ones(shape, dtype=np.int64)
            pads = rng.integers(0, shape[1] // 2 + 1, size=shape[0])
            for b, pad in enumerate(pads):
                if pad:
                    arr[b, shape[1] - int(pad):] = 0
        elif spec.kind == "zeros":
            arr = np.zeros(shape, dtype=np.dtype(spec.dtype))
        else:  # pragma: no cover - registry bug
            raise ValueError(f"unknown input kind {spec.kind!r}")
        out[spec.name] = arr.astype(np.dtype(spec.dtype), copy=False)
    return out


def _forward_order(model: Any, entry: registry.ZooEntry) -> list[str]:
    """Input names in the order the model's forward takes them."""
    names = [i.name for i in entry.inputs]
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return names
    if entry.is_text:
        missing = [n for n in names if n not in params]
        if missing:
            raise ZooError(f"{entry.name}: forward{tuple(params)} does not take inputs {missing}")
        return sorted(names, key=params.index)
    return names


# ---- building ---------------------------------------------------------------------------------
@dataclass
class Built:
    """A built (and possibly pruned) PyTorch model and what was done to it."""

    model: Any
    stub: Stub
    seed: int
    prunable: dict[str, str]  # module name -> "" (recipe prunes it)
    dense: dict[str, str]  # module name -> reason the recipe keeps it dense
    results: list  # list[PruneResult] (empty for dense)


def recipe_layers(model: Any, entry: registry.ZooEntry) -> tuple[list[str], dict[str, str]]:
    """Splits the Conv/Linear modules of ``model`` into (pruned by the recipe, kept dense with
    the reason), following the recipe in :mod:`sparseinfer.zoo.registry`."""
    nn = _torch().nn
    convs_linears = [(n, m) for n, m in model.named_modules()
                     if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    linears = [n for n, m in convs_linears if isinstance(m, nn.Linear)]
    first_conv = next((n for n, m in convs_linears if isinstance(m, nn.Conv2d)), None)
    prune, dense = [], {}
    for name, m in convs_linears:
        if entry.first_conv_dense and name == first_conv and m.in_channels == 3:
            dense[name] = "first conv (input layer)"
        elif isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
            dense[name] = "depthwise conv"
        elif entry.classifier_dense and linears and name == linears[-1]:
            dense[name] = "final classifier"
        elif any(name == p or name.startswith(p + ".") or fnmatch.fnmatch(name, p) for p in entry.dense_layers):
            dense[name] = "task head"
        else:
            prune.append(name)
    return prune, dense


def _batchnorms(model: Any) -> list:
    torch = _torch()
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _randomize_bn(model: Any, seed: int) -> None:
    torch = _torch()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bn in _batchnorms(model):
            if bn.weight is not None:
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)  # U(0.5, 1.5)
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)  # N(0, 0.1)


def _calibrate_bn(model: Any, entry: registry.ZooEntry, seed: int) -> None:
    """Recomputes BatchNorm running stats (cumulative average) over seeded random batches."""
    torch = _torch()
    bns = _batchnorms(model)
    model.eval()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    batch = 2 if entry.heavy else 4
    order = _forward_order(model, entry)
    with torch.no_grad():
        for i in range(CALIBRATION_BATCHES):
            arrays = make_inputs(entry, batch_size=batch, seed=seed + 100 + i)
            model(*[torch.from_numpy(arrays[n]) for n in order])
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()


def build(stub: str | Stub, variant: str | None = None) -> Built:
    """Builds the exact PyTorch model a stub exports (seeded, BN calibrated, pruned)."""
    torch = _torch()
    st = stub if isinstance(stub, Stub) else parse(stub, variant)
    entry = st.entry
    seed = seed_for(entry.name)
    torch.manual_seed(seed)
    try:
        model = entry.build()
    except ImportError as exc:
        raise ZooError(f"cannot build zoo model {entry.name!r}: {exc}") from exc
    model.eval()
    calibrate = entry.weights == "random" and bool(_batchnorms(model))
    if calibrate:
        _randomize_bn(model, seed)
    prune, dense = recipe_layers(model, entry)
    results = []
    target, structure = registry.VARIANTS[st.variant]
    if structure != "dense":
        from sparseinfer.sparsify.magnitude import prune_modules

        # Magnitude pruning reads only Conv/Linear weights, so calibrating the dense model first
        # would change nothing: the stats are computed once, on the pruned model (as fine-tuning
        # would leave them).
        results = prune_modules(model, prune, target, structure)
    if calibrate:
        _calibrate_bn(model, entry, seed)
    model.eval()
    return Built(model, st, seed, {n: "" for n in prune}, dense, results)


# ---- export -----------------------------------------------------------------------------------
@dataclass
class ZooModel:
    """An exported zoo model: the ONNX file, its card and its registry entry."""

    path: Path
    card: ModelCard
    entry: registry.ZooEntry
    cache_hit: bool = False

    @property
    def stub(self) -> str:
        return self.card.stub


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _measure_gzip() -> bool:
    return os.environ.get(GZIP_ENV_VAR, "1").strip() not in ("0", "false", "no")


def _cached(directory: Path) -> ModelCard | None:
    card_path, model_path = directory / "card.json", directory / "model.onnx"
    if not card_path.is_file() or not model_path.is_file():
        return None
    try:
        card = ModelCard.load(card_path)
    except Exception:  # noqa: BLE001 - unreadable card: regenerate
        return None
    if card.generator_version != GENERATOR_VERSION:
        return None
    if card.gzip9_size is None and _measure_gzip():
        return None
    if model_path.stat().st_size != card.file_size or _sha256_file(model_path) != card.onnx_sha256:
        return None
    return card


def export(stub: str | Stub, variant: str | None = None, cache_dir: str | os.PathLike | None = None,
           force: bool = False) -> ZooModel:
    """Exports a zoo model to ONNX (or returns the cached export)."""
    st = stub if isinstance(stub, Stub) else parse(stub, variant)
    directory = cache_root(cache_dir) / f"{st.entry.name}-{st.variant}"
    if not force:
        card = _cached(directory)
        if card is not None:
            return ZooModel(directory / "model.onnx", card, st.entry, cache_hit=True)
    built = build(st)
    data, proto = _to_onnx(built)
    card = _make_card(built, data, proto)
    _atomic_write(directory / "model.onnx", data)
    _atomic_write(directory / "card.json", card.to_json().encode())
    return ZooModel(directory / "model.onnx", card, st.entry)


def _to_onnx(built: Built) -> tuple[bytes, Any]:
    import onnx

    torch = _torch()
    entry, model = built.stub.entry, built.model
    order = _forward_order(model, entry)
    arrays = make_inputs(entry, batch_size=2, seed=0)
    args = tuple(torch.from_numpy(arrays[n]) for n in order)
    with torch.no_grad():
        out = model(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if len(outs) != len(entry.outputs):
        raise ZooError(f"{entry.name}: the model returns {len(outs)} outputs but the registry names "
                       f"{len(entry.outputs)}: {list(entry.outputs)}")
    specs = {i.name: i for i in entry.inputs}
    dynamic: dict[str, dict[int, str]] = {}
    for n in order:
        dynamic[n] = {0: "batch"}
        if "sequence" in specs[n].shape:
            dynamic[n][1] = "sequence"
    for name, t in zip(entry.outputs, outs):
        dynamic[name] = {0: "batch"}
        if entry.is_text and t.dim() == 3:
            dynamic[name][1] = "sequence"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, buf, dynamo=False, opset_version=OPSET,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                          input_names=order, output_names=list(entry.outputs), dynamic_axes=dynamic)
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ZooError(f"{entry.name}: exported ONNX model fails onnx.checker: {exc}") from exc
    return data, proto


def _value_info(vi: Any) -> dict[str, Any]:
    import onnx

    t = vi.type.tensor_type
    shape = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
    return {"name": vi.name, "shape": shape, "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))}


def _make_card(built: Built, data: bytes, proto: Any) -> ModelCard:
    import onnx
    from onnx import numpy_helper

    import sparseinfer
    from sparseinfer.graph.flops import analyze_flops

    torch = _torch()
    st, entry, model = built.stub, built.stub.entry, built.model
    target, structure = registry.VARIANTS[st.variant]
    report = analyze_flops(proto, dim_values={"batch": 1, "sequence": 128})
    if report.unknown:
        raise ZooError(f"{entry.name}: could not infer shapes for {report.unknown[:5]}")

    # Map each ONNX weight to its PyTorch module by content (the exporter may rename or transpose).
    def key(a: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes() + str(a.shape).encode()).hexdigest()

    by_content: dict[str, str] = {}
    for name, m in model.named_modules():
        if name in built.prunable or name in built.dense:
            w = m.weight.detach().numpy()
            by_content[key(w)] = name
            if w.ndim == 2:
                by_content[key(w.T)] = name
    notes = {r.name: r.note for r in built.results if r.note}
    pruned_modules = {r.name for r in built.results if r.pruned}
    inits = {i.name: i for i in proto.graph.initializer}
    layers, seen = [], set()
    for layer in report.layers:
        if layer.weight is None or layer.weight in seen:
            continue
        seen.add(layer.weight)
        module = None
        if layer.weight in inits:
            module = by_content.get(key(numpy_helper.to_array(inits[layer.weight])))
        layers.append({
            "name": layer.weight, "node": layer.node, "op": layer.op, "module": module,
            "shape": list(layer.weight_shape), "reduction_axis": layer.reduction_axis,
            "sparsity": round(layer.sparsity, 6), "nonzeros": layer.weight_nonzeros,
            "prunable": module in built.prunable, "pruned": module in pruned_modules,
            "note": built.dense.get(module, notes.get(module, "")) if module else "not a Conv/Linear weight",
        })
    found = {entry_["module"] for entry_ in layers}
    missing = [n for n in list(built.prunable) + list(built.dense) if n not in found]
    if missing:
        raise ZooError(f"{entry.name}: could not find the ONNX weights of modules {missing[:5]}")
    pruned_names = [lay["name"] for lay in layers if lay["pruned"]]
    prunable_names = [lay["name"] for lay in layers if lay["prunable"]]
    headline = report.weight_sparsity(pruned_names or prunable_names) if (pruned_names or prunable_names) else 0.0

    if entry.weights == "random":
        note = registry.RANDOM_WEIGHTS_NOTE
    elif st.variant == "dense":
        note = registry.REAL_WEIGHTS_NOTE
    else:
        note = registry.PRUNED_REAL_NOTE
    left_dense = sorted({lay["module"] for lay in layers if lay["prunable"] and not lay["pruned"]
                         and st.variant != "dense"} - {None})
    pruning = {
        "method": "none" if structure == "dense" else "magnitude",
        "structure": structure,
        "target": target,
        "scope": "per layer (uniform)",
        "recipe": "every Conv/Linear weight except: first conv (3 input channels), depthwise convs, "
                  "final classifier, task heads; see sparseinfer.zoo.registry",
        "kept_dense": dict(sorted(built.dense.items())),
        "bn_recalibrated_after_pruning": bool(entry.weights == "random" and structure != "dense"
                                              and _batchnorms(model)),
    }
    if structure == "block4":
        pruning["block"] = {"size": 4, "along": "reduction dimension (conv input channels, linear input features)",
                            "layers_left_dense_not_multiple_of_4": left_dense}
    return ModelCard(
        generator_version=GENERATOR_VERSION,
        name=entry.name,
        variant=st.variant,
        stub=str(st),
        architecture=entry.description or entry.name,
        task=entry.task,
        weights=entry.weights,
        weight_source=entry.weight_source_detail(),
        note=note,
        seed=built.seed,
        opset=max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        onnx_sha256=hashlib.sha256(data).hexdigest(),
        file_size=len(data),
        gzip9_size=len(gzip.compress(data, 9, mtime=0)) if _measure_gzip() else None,
        parameters=int(sum(p.numel() for p in model.parameters())),
        flops={"dense": report.flops, "nonzero": report.nonzero_flops, "macs_dense": report.macs,
               "macs_nonzero": report.nonzero_macs, "per": "example (batch 1) at the default input shape",
               "input_shapes": report.input_shapes},
        sparsity=round(headline, 6),
        sparsity_all_conv_linear=round(report.weight_sparsity(), 6),
        pruning=pruning,
        layers=layers,
        inputs=[_value_info(vi) for vi in proto.graph.input if vi.name not in inits],
        outputs=[_value_info(vi) for vi in proto.graph.output],
        default_input_shapes={k: list(v) for k, v in entry.default_shapes.items()},
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "sparseinfer": sparseinfer.__version__},
        description=entry.description,
    )
