"""The digits experiment: a small CNN on scikit-learn's bundled handwritten digits (8x8, 1797
images, available offline), trained dense, then pruned with a recipe by fine-tuning.

Split (stratified, seed 0): 60% train, 20% validation (sensitivity analysis), 20% test
(reported accuracy). Needs scikit-learn (``pip install scikit-learn``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sparseinfer.sparsify.manager import ParamSparsity, RecipeManager, overall_sparsity


@dataclass(frozen=True)
class DigitsData:
    """Float32 images ``(N, 1, 8, 8)`` scaled to [0, 1] and int64 labels, per split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data(seed: int = 0) -> DigitsData:
    """The digits data set split 60/20/20 (stratified, seeded)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - environment
        raise ImportError("the digits experiment needs scikit-learn: pip install scikit-learn") from exc
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    x_val, x_te, y_val, y_te = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    t = torch.from_numpy
    return DigitsData(t(x_tr), t(y_tr), t(x_val), t(y_val), t(x_te), t(y_te))


class DigitsCNN(nn.Module):
    """conv(1->32)-BN-ReLU, conv(32->64)-BN-ReLU-pool, conv(64->128)-BN-ReLU-pool,
    fc(512->128)-ReLU, fc(128->10). About 170k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128 * 2 * 2, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn3(self.conv3(x))), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``(x, y)``."""
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train(model: nn.Module, data: DigitsData, epochs: int, lr: float = 2e-3, batch_size: int = 32,
          seed: int = 0, manager: RecipeManager | None = None) -> nn.Module:
    """Trains with Adam and cross-entropy for ``epochs``; with a ``manager`` the recipe drives
    learning rate and pruning (``epochs`` should then be ``manager.max_epochs``)."""
    g = torch.Generator().manual_seed(seed)
    optimizer: Any = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(data.x_train)
    if manager is not None:
        optimizer = manager.wrap(model, optimizer, steps_per_epoch=(n + batch_size - 1) // batch_size)
    for _ in range(epochs):
        model.train()
        for idx in _batches(n, batch_size, g):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
            optimizer.step()
    model.eval()
    return model


def train_baseline(data: DigitsData, epochs: int = 20, seed: int = 0) -> DigitsCNN:
    """The dense baseline: :class:`DigitsCNN` trained ``epochs`` epochs (seeded)."""
    torch.manual_seed(seed)
    return train(DigitsCNN(), data, epochs, seed=seed)


def prune_with_recipe(baseline: nn.Module, data: DigitsData, recipe: str | os.PathLike = "digits_gmp",
                      overrides: dict[str, Any] | None = None, seed: int = 1) -> tuple[DigitsCNN, list[ParamSparsity]]:
    """A copy of ``baseline`` fine-tuned and pruned by ``recipe`` (default: the shipped
    ``digits_gmp``); returns it with the per-parameter sparsities."""
    model = DigitsCNN()
    model.load_state_dict(baseline.state_dict())
    manager = RecipeManager.from_yaml(recipe, overrides)
    train(model, data, manager.max_epochs, seed=seed, manager=manager)
    return model, manager.finalize(model)


@dataclass(frozen=True)
class LevelResult:
    """One row of the experiment: a model, its accuracy and (when exported) the engine check."""

    name: str
    target: float
    sparsity: float  # of the pruned parameters
    test_accuracy: float
    val_accuracy: float
    onnx: str | None = None
    engine_equal: bool | None = None
    engine_same_predictions: float | None = None
    engine_ms: dict[int, float] | None = None  # batch size -> median ms
    torch_ms: dict[int, float] | None = None


def run_experiment(levels: tuple[float, ...] = (0.8, 0.9, 0.95), out_dir: str | os.PathLike | None = None,
                   recipe: str | os.PathLike = "digits_gmp", baseline_epochs: int = 20,
                   time_batches: tuple[int, ...] = (1, 64), time_repeats: int = 50,
                   num_cores: int = 1) -> list[LevelResult]:
    """Trains the dense baseline, prunes it with ``recipe`` at each level (overriding its
    ``final_sparsity`` variable) and, with ``out_dir``, exports each model to
    ``out_dir/digits-<name>.onnx``, checks the engine's outputs on the whole test set against
    PyTorch (rtol/atol 1e-4) and times both at ``time_batches`` (medians, ``num_cores``
    threads each, alternating in the same run)."""
    from pathlib import Path

    from sparseinfer.sparsify.export import check_in_engine, export_onnx

    data = load_data()
    models: list[tuple[str, float, nn.Module, float]] = []
    baseline = train_baseline(data, baseline_epochs)
    models.append(("dense", 0.0, baseline, 0.0))
    for level in levels:
        model, report = prune_with_recipe(baseline, data, recipe, {"final_sparsity": level})
        models.append((f"pruned{round(level * 100)}", level, model, overall_sparsity(report)))
    results = []
    for name, target, model, sparsity in models:
        row: dict[str, Any] = dict(name=name, target=target, sparsity=sparsity,
                                   test_accuracy=accuracy(model, data.x_test, data.y_test),
                                   val_accuracy=accuracy(model, data.x_val, data.y_val))
        if out_dir is not None:
            exported = export_onnx(model, data.x_test[:2], Path(out_dir) / f"digits-{name}.onnx")
            check = check_in_engine(exported.path, model, [data.x_test.numpy()], num_cores=num_cores)
            row.update(onnx=str(exported.path), engine_equal=check.ok, engine_same_predictions=check.same_argmax,
                       engine_ms={}, torch_ms={})
            for batch in time_batches if time_repeats > 0 else ():
                x = data.x_test.numpy()[:batch]
                timed = check_in_engine(exported.path, model, [x], num_cores=num_cores, time_repeats=time_repeats)
                row["engine_ms"][batch], row["torch_ms"][batch] = timed.engine_ms, timed.torch_ms
        results.append(LevelResult(**row))
    return results


def format_table(results: list[LevelResult]) -> str:
    """A Markdown table of :func:`run_experiment`'s results."""
    base = results[0].test_accuracy
    batches = sorted({b for r in results for b in (r.engine_ms or {})})
    head = ["model", "sparsity", "test acc", "% of baseline", "val acc", "engine == torch"]
    head += [f"engine ms b{b}" for b in batches] + [f"torch ms b{b}" for b in batches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.name, f"{r.sparsity:.1%}", f"{r.test_accuracy:.2%}", f"{r.test_accuracy / base:.2%}",
                 f"{r.val_accuracy:.2%}",
                 "n/a" if r.engine_equal is None else f"{r.engine_equal} ({r.engine_same_predictions:.0%} same argmax)"]
        cells += [f"{(r.engine_ms or {}).get(b, float('nan')):.3f}" for b in batches]
        cells += [f"{(r.torch_ms or {}).get(b, float('nan')):.3f}" for b in batches]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
