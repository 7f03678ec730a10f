import pytest
import torch

from sparseinfer.sparsify.manager import RecipeManager
from sparseinfer.sparsify.recipe import parse_recipe
from sparseinfer.sparsify.sensitivity import SensitivityResult, analyze, targets_to_recipe


def _fidelity(reference, x):
    """Negative mean squared error of the outputs against the dense model's (higher is better)."""
    with torch.no_grad():
        ref = reference(x)
    return lambda m: -float(((m(x) - ref) ** 2).mean())


def test_analyze_restores_weights_and_orders_drops(tiny_net, tmp_path):
    import copy

    x = torch.randn(16, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    before = {n: p.detach().clone() for n, p in tiny_net.named_parameters()}
    result = analyze(tiny_net, _fidelity(copy.deepcopy(tiny_net), x), levels=(0.9, 0.5))
    for n, p in tiny_net.named_parameters():
        assert torch.equal(p, before[n]), f"{n} was not restored"
    assert result.levels == [0.5, 0.9]
    assert list(result.metrics) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert result.baseline == 0.0
    for name in result.metrics:  # pruning more never helps fidelity here
        d50, d90 = result.drops(name)
        assert 0 < d50 <= d90

    targets = result.targets(max_drop=max(result.drops("fc1.weight")))
    assert targets["fc1.weight"] == 0.9
    assert all(v in (0.0, 0.5, 0.9) for v in targets.values())
    assert all(v == 0.0 for v in result.targets(0.0).values())

    assert "| fc1.weight | 2048 |" in result.table()
    loaded = SensitivityResult.load_json(result.save_json(tmp_path / "s.json"))
    assert loaded == result
    png = result.plot(tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_targets_to_recipe_round_trips(tiny_net):
    text = targets_to_recipe({"conv2.weight": 0.9, "fc1.weight": 0.9, "conv1.weight": 0.0, "fc2.weight": 0.5})
    recipe = parse_recipe(text)
    assert [(m.params, m.final_sparsity) for m in recipe.modifiers] == [
        (["fc2.weight"], 0.5), (["conv2.weight", "fc1.weight"], 0.9)]
    report = {r.name: r.sparsity for r in RecipeManager(recipe).one_shot(tiny_net)}
    assert report["fc1.weight"] == pytest.approx(0.9, abs=1e-3)
    with pytest.raises(ValueError, match="nothing to prune"):
        targets_to_recipe({"a": 0.0})


def test_analyze_rejects_bad_input(tiny_net):
    with pytest.raises(ValueError, match="not in the model"):
        analyze(tiny_net, lambda m: 0.0, params=["head.weight"])
    with pytest.raises(ValueError, match="levels must be"):
        analyze(tiny_net, lambda m: 0.0, levels=(1.0,))
