"""Model cards: what a zoo export is, where its weights come from, and what was measured on the
exported ONNX file. Serialised as deterministic JSON (sorted keys, no timestamps)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class ModelCard:
    """The ``card.json`` next to each exported ``model.onnx``."""

    generator_version: int
    name: str
    variant: str
    stub: str
    architecture: str
    task: str
    weights: str  # "random" or "real"
    weight_source: str
    note: str  # honesty: what may (not) be claimed for this file
    seed: int
    opset: int
    onnx_sha256: str
    file_size: int
    gzip9_size: int | None  # None when not measured (SPARSEINFER_ZOO_GZIP=0)
    parameters: int  # PyTorch parameters (BatchNorm running stats excluded)
    flops: dict[str, Any]  # dense / nonzero FLOPs and MACs per example at the default shape
    sparsity: float  # zeros over the weights of the layers the recipe prunes (from the ONNX file)
    sparsity_all_conv_linear: float  # zeros over all Conv/Gemm/MatMul weights
    pruning: dict[str, Any]  # method, structure, target, recipe, dense-layer reasons
    layers: list[dict[str, Any]]  # per weight initializer: name, shape, sparsity, pruned, ...
    inputs: list[dict[str, Any]]  # name, shape (symbolic dims as strings), dtype
    outputs: list[dict[str, Any]]
    default_input_shapes: dict[str, list[int]]
    versions: dict[str, str]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self) -> str:
        """A few human-readable lines (used by ``sparseinfer zoo export``)."""
        ins = ", ".join(f"{i['name']} {i['dtype']}[{','.join(str(d) for d in i['shape'])}]" for i in self.inputs)
        outs = ", ".join(f"{o['name']}[{','.join(str(d) for d in o['shape'])}]" for o in self.outputs)
        return "\n".join([
            f"{self.stub}  ({self.task}; {self.weights} weights)",
            f"  weights:    {self.weight_source}",
            f"  note:       {self.note}",
            f"  parameters: {self.parameters:,}",
            f"  GFLOPs:     {self.flops['dense'] / 1e9:.3f} dense, {self.flops['nonzero'] / 1e9:.3f} "
            f"with zeros skipped (batch 1)",
            f"  sparsity:   {100 * self.sparsity:.2f}% of pruned layers, "
            f"{100 * self.sparsity_all_conv_linear:.2f}% of all conv/linear weights",
            f"  inputs:     {ins}",
            f"  outputs:    {outs}",
            f"  file:       {self.file_size:,} bytes "
            f"({'gzip -9 not measured' if self.gzip9_size is None else f'{self.gzip9_size:,} gzip -9'}), "
            f"opset {self.opset}",
        ])
