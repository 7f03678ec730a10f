"""Small models shared by the sparsify tests; one or two threads (shared 2-core machine)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="sparsify needs PyTorch: pip install 'sparseinfer[zoo]'")
pytest.importorskip("yaml", reason="recipes need PyYAML: pip install 'sparseinfer[sparsify]'")

torch.set_num_threads(1)


class TinyNet(torch.nn.Module):
    """conv(4->8) -> conv(8->8) -> linear(8*4*4 -> 16) -> linear(16 -> 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc1 = torch.nn.Linear(8 * 4 * 4, 16)
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyNet()
