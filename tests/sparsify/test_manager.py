import pytest
import torch

from sparseinfer.sparsify.magnitude import sparsity_of
from sparseinfer.sparsify.manager import RecipeManager, one_shot_prune
from sparseinfer.sparsify.masks import compute_masks

RECIPE = """
modifiers:
  - GMPruningModifier:
      params: [conv2.weight, fc1.weight]
      init_sparsity: 0.2
      final_sparsity: 0.8
      start_epoch: 1
      end_epoch: 3
      update_frequency: 1
  - SetLearningRateModifier: {learning_rate: 0.05, start_epoch: 2}
"""


def _train(model, optimizer, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 4, 4, 4, generator=g)
        y = torch.randint(0, 3, (4,), generator=g)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_masks_follow_schedule_and_lr(tiny_net):
    manager = RecipeManager.from_yaml(RECIPE)
    opt = manager.wrap(tiny_net, torch.optim.SGD(tiny_net.parameters(), lr=0.01), steps_per_epoch=2)
    _train(tiny_net, opt, 2)  # epoch 0: nothing pruned yet
    assert sparsity_of(tiny_net.conv2.weight) == 0.0
    assert opt.param_groups[0]["lr"] == 0.01
    _train(tiny_net, opt, 2)  # epoch 1: init sparsity
    assert sparsity_of(tiny_net.conv2.weight) == pytest.approx(0.2, abs=1e-3)
    _train(tiny_net, opt, 2)  # epoch 2: cubic midpoint 0.8 + (0.2 - 0.8) * 0.5^3
    assert sparsity_of(tiny_net.fc1.weight) == pytest.approx(0.725, abs=1e-3)
    assert opt.param_groups[0]["lr"] == 0.05
    _train(tiny_net, opt, 4)  # epochs 3-4: final, held
    report = manager.finalize(tiny_net)
    assert {r.name: round(r.sparsity, 3) for r in report} == {"conv2.weight": 0.8, "fc1.weight": 0.8}
    assert sparsity_of(tiny_net.conv1.weight) == 0.0  # not in params


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=0.01),
    lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
], ids=["sgd-momentum", "adam", "adamw"])
def test_zeros_persist_through_optimizer_steps(tiny_net, make_opt):
    manager = RecipeManager.from_yaml("modifiers:\n  - GMPruningModifier: {params: ['re:.*weight'], "
                                      "init_sparsity: 0.5, final_sparsity: 0.5, start_epoch: 0, end_epoch: 1}\n")
    opt = manager.wrap(tiny_net, make_opt(tiny_net.parameters()), steps_per_epoch=1)
    _train(tiny_net, opt, 1)
    zeros = {n: (p == 0).clone() for n, p in tiny_net.named_parameters() if n.endswith("weight")}
    assert all(z.float().mean() == pytest.approx(0.5, abs=0.01) for z in zeros.values())
    _train(tiny_net, opt, 8, seed=1)  # momentum / Adam moments must not resurrect a zero
    for n, p in tiny_net.named_parameters():
        if n.endswith("weight"):
            assert torch.all(p[zeros[n]] == 0), n
            state = opt.state[p]
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                if key in state:
                    assert torch.all(state[key][zeros[n]] == 0), (n, key)
    manager.finalize(tiny_net)
    _train(tiny_net, opt, 1, seed=2)  # hooks removed: the optimizer is plain again
    assert sum(int((p == 0).sum()) for n, p in tiny_net.named_parameters() if n.endswith("weight")) < \
        sum(int(z.sum()) for z in zeros.values())


def test_constant_pruning_holds_existing_zeros(tiny_net):
    with torch.no_grad():
        tiny_net.fc1.weight[:, ::2] = 0
    manager = RecipeManager.from_yaml("modifiers:\n  - ConstantPruningModifier: {params: [fc1.weight]}\n")
    opt = manager.wrap(tiny_net, torch.optim.SGD(tiny_net.parameters(), lr=0.5, momentum=0.9), steps_per_epoch=2)
    _train(tiny_net, opt, 5)
    assert torch.all(tiny_net.fc1.weight[:, ::2] == 0)
    assert torch.all(tiny_net.fc1.weight[:, 1::2] != 0)


def test_one_shot_layer_and_global(tiny_net):
    report = one_shot_prune(tiny_net, "modifiers:\n  - GMPruningModifier: {params: [conv2.weight, fc1.weight], "
                                      "final_sparsity: 0.9}\n")
    assert [r.sparsity for r in report] == pytest.approx([0.9, 0.9], abs=1 / 576)  # round(0.9 * numel)
    torch.manual_seed(1)
    other = type(tiny_net)()
    with torch.no_grad():
        other.fc1.weight.mul_(10)  # global: the large layer keeps more
    report = {r.name: r.sparsity for r in one_shot_prune(
        other, "modifiers:\n  - GMPruningModifier: {params: [conv2.weight, fc1.weight], final_sparsity: 0.5, "
               "scope: global}\n")}
    total = other.conv2.weight.numel() + other.fc1.weight.numel()
    zeros = int((other.conv2.weight == 0).sum() + (other.fc1.weight == 0).sum())
    assert zeros == round(0.5 * total)
    assert report["conv2.weight"] > 0.9 and report["fc1.weight"] < 0.5


def test_global_mask_threshold_is_shared():
    w = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([[0.5, 5.0], [6.0, 0.1]])}
    m = compute_masks(w, 0.5, scope="global")
    assert m["a"].tolist() == [[False, False], [True, True]]
    assert m["b"].tolist() == [[False, True], [True, False]]


def test_block4_structure(tiny_net):
    one_shot_prune(tiny_net, "modifiers:\n  - BlockPruningModifier: {params: [conv2.weight, fc1.weight], "
                             "final_sparsity: 0.75}\n")
    for w in (tiny_net.conv2.weight, tiny_net.fc1.weight):
        blocks = w.detach().movedim(1, -1).reshape(-1, 4)
        zero = (blocks == 0).all(1)
        assert zero.float().mean() == pytest.approx(0.75, abs=0.01)
        assert torch.all((blocks[~zero] != 0).all(1))  # no partial block


def test_wrap_rejects_bad_steps_and_foreign_optimizer(tiny_net):
    manager = RecipeManager.from_yaml("modifiers:\n  - GMPruningModifier: {params: [fc1.weight]}\n")
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        manager.wrap(tiny_net, torch.optim.SGD(tiny_net.parameters(), lr=0.1), 0)
    with pytest.raises(ValueError, match="not in the optimizer"):
        manager.wrap(tiny_net, torch.optim.SGD(tiny_net.conv1.parameters(), lr=0.1), 1)
