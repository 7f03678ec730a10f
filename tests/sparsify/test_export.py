import numpy as np
import pytest
import torch

from sparseinfer.sparsify.export import check_in_engine, export_onnx
from sparseinfer.sparsify.manager import one_shot_prune

pytest.importorskip("sparseinfer._core", reason="the native core is not built (tools/build_inplace.sh)")


def test_export_keeps_zeros_and_engine_matches_torch(tiny_net, tmp_path):
    one_shot_prune(tiny_net, "modifiers:\n  - GMPruningModifier: {params: [conv2.weight, fc1.weight], "
                             "final_sparsity: 0.9}\n")
    result = export_onnx(tiny_net, torch.randn(2, 4, 4, 4), tmp_path / "m.onnx")
    assert result.path.is_file()
    assert sorted(round(s, 2) for s in result.weight_sparsity.values()) == [0.0, 0.0, 0.9, 0.9]
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 4), dtype=np.float32)  # batch differs from export
    check = check_in_engine(result.path, tiny_net, [x], rtol=1e-4, atol=1e-4, num_cores=1)
    assert check.ok, check
    assert check.same_argmax == 1.0


def test_export_removes_torch_prune_masks(tiny_net, tmp_path):
    import onnx

    torch.nn.utils.prune.l1_unstructured(tiny_net.fc1, "weight", amount=0.5)
    result = export_onnx(tiny_net, torch.randn(1, 4, 4, 4), tmp_path / "m.onnx")
    names = [i.name for i in onnx.load(str(result.path)).graph.initializer]
    assert not any("mask" in n or "orig" in n for n in names), names
    assert not hasattr(tiny_net.fc1, "weight_mask")
    assert 0.5 in [round(s, 2) for s in result.weight_sparsity.values()]
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 4), dtype=np.float32)
    assert check_in_engine(result.path, tiny_net, [x], num_cores=1).ok


def test_export_rejects_mismatched_names(tiny_net, tmp_path):
    with pytest.raises(ValueError, match="2 input names"):
        export_onnx(tiny_net, torch.randn(1, 4, 4, 4), tmp_path / "m.onnx", input_names=("a", "b"))
