"""Small multilayer perceptrons for the model zoo."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp6"]


def mlp6() -> nn.Module:
    """Six-layer fully connected binary classifier used in CPU framework comparisons.

    Linear 200-128-64-32-16-8 with ReLU after each, then Linear 8-1 and Sigmoid (a plain
    multilayer perceptron, Rumelhart et al., 1986). Input (B, 200) float32 -> probability (B, 1).
    Weights use PyTorch's default ``nn.Linear`` initialisation (seed with ``torch.manual_seed``).
    """
    widths = [200, 128, 64, 32, 16, 8]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers += [nn.Linear(widths[-1], 1), nn.Sigmoid()]
    return nn.Sequential(*layers)
