"""One-shot sensitivity analysis: prune each layer alone at several levels, measure the metric
on validation data, and turn the drops into per-layer sparsity targets.

::

    result = analyze(model, lambda m: accuracy(m, x_val, y_val), levels=(0.5, 0.8, 0.9, 0.95))
    print(result.table()); result.save_json("sens.json"); result.plot("sens.png")
    targets = result.targets(max_drop=0.005)          # param -> highest level within the budget
    print(targets_to_recipe(targets, end_epoch=10))   # a GMP recipe pruning to those targets

The metric is "higher is better" (accuracy, cosine similarity, ...); the drop is
``baseline - metric``. Each layer is pruned from the model's own weights and restored after.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from sparseinfer.sparsify.magnitude import Structure, make_mask
from sparseinfer.sparsify.masks import prunable_params

DEFAULT_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass
class SensitivityResult:
    """``metrics[param][i]`` is the metric with only ``param`` pruned to ``levels[i]``."""

    baseline: float
    levels: list[float]
    metrics: dict[str, list[float]]
    numel: dict[str, int]

    def drops(self, param: str) -> list[float]:
        """``baseline - metric`` per level for ``param``."""
        return [self.baseline - m for m in self.metrics[param]]

    def targets(self, max_drop: float) -> dict[str, float]:
        """Per parameter, the highest level whose drop is at most ``max_drop`` (0.0 when even
        the lowest level costs more: keep it dense)."""
        if max_drop < 0:
            raise ValueError(f"max_drop must be >= 0, got {max_drop}")
        out = {}
        for name in self.metrics:
            ok = [lvl for lvl, d in zip(self.levels, self.drops(name)) if d <= max_drop + 1e-12]
            out[name] = max(ok, default=0.0)
        return out

    def table(self) -> str:
        """A Markdown table: one row per parameter, the metric drop per level."""
        head = ["param", "numel"] + [f"drop@{lvl:g}" for lvl in self.levels]
        lines = [f"baseline metric: {self.baseline:.4f}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name in self.metrics:
            lines.append("| " + " | ".join([name, str(self.numel[name])] + [f"{d:+.4f}" for d in self.drops(name)]) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)

    def save_json(self, path: str | os.PathLike) -> Path:
        """Writes the result as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> "SensitivityResult":
        """Reads a result written by :meth:`save_json`."""
        return cls(**json.loads(Path(path).read_text()))

    def plot(self, path: str | os.PathLike, title: str = "pruning sensitivity") -> Path:
        """Metric drop vs sparsity, one line per parameter, as a PNG (matplotlib, Agg)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in self.metrics:
            ax.plot(self.levels, self.drops(name), marker="o", label=name)
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.set_xlabel("sparsity of the layer (others dense)")
        ax.set_ylabel("metric drop (baseline - metric)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def analyze(model: torch.nn.Module, evaluate: Callable[[torch.nn.Module], float],
            params: Sequence[str] | None = None, levels: Sequence[float] = DEFAULT_LEVELS,
            structure: Structure = "unstructured") -> SensitivityResult:
    """Prunes each of ``params`` (default: every Conv/Linear weight) alone to each of ``levels``
    by magnitude, calls ``evaluate(model)`` under ``torch.no_grad`` (higher is better) and
    restores the weight."""
    levels = sorted(float(v) for v in levels)
    if not levels or not all(0.0 <= v < 1.0 for v in levels):
        raise ValueError(f"levels must be a non-empty list of sparsities in [0, 1), got {levels}")
    all_params = dict(model.named_parameters())
    params = list(params) if params is not None else prunable_params(model)
    unknown = [p for p in params if p not in all_params]
    if unknown:
        raise ValueError(f"parameters {unknown} are not in the model; expected names from {list(all_params)}")
    def run() -> float:
        with torch.no_grad():
            return float(evaluate(model))

    baseline = run()
    metrics: dict[str, list[float]] = {}
    for name in params:
        weight = all_params[name]
        saved = weight.detach().clone()
        values = []
        try:
            for level in levels:
                with torch.no_grad():
                    weight.mul_(make_mask(saved, level, structure).to(weight.dtype))
                values.append(run())
                with torch.no_grad():
                    weight.copy_(saved)
        finally:
            with torch.no_grad():
                weight.copy_(saved)
        metrics[name] = values
    return SensitivityResult(baseline, levels, metrics, {n: all_params[n].numel() for n in params})


def targets_to_recipe(targets: dict[str, float], start_epoch: float = 0.0, end_epoch: float = 10.0,
                      update_frequency: float = 0.5, init_sparsity: float = 0.05) -> str:
    """Recipe YAML with one GMPruningModifier per distinct target level (layers with target 0
    are left out), e.g. from :meth:`SensitivityResult.targets`."""
    import yaml

    by_level: dict[float, list[str]] = {}
    for name, level in targets.items():
        if level > 0:
            by_level.setdefault(level, []).append(name)
    if not by_level:
        raise ValueError("every target is 0: nothing to prune; expected at least one layer with a target > 0")
    modifiers = [{"GMPruningModifier": {"params": names, "init_sparsity": min(init_sparsity, level),
                                        "final_sparsity": level, "start_epoch": start_epoch,
                                        "end_epoch": end_epoch, "update_frequency": update_frequency}}
                 for level, names in sorted(by_level.items())]
    return yaml.safe_dump({"modifiers": modifiers}, sort_keys=False)
