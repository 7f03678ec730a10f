"""The acceptance experiment on real data (scikit-learn's bundled digits, no download)."""

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn: pip install scikit-learn")
pytest.importorskip("sparseinfer._core", reason="the native core is not built (tools/build_inplace.sh)")

from sparseinfer.sparsify import digits  # noqa: E402
from sparseinfer.sparsify.export import check_in_engine, export_onnx  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(2)
    data = digits.load_data()
    return data, digits.train_baseline(data)


@pytest.mark.slow  # ~40 s alone on 2 threads, minutes on a loaded machine
def test_gmp_90_keeps_99_percent_of_baseline_and_engine_agrees(trained, tmp_path):
    data, baseline = trained
    base_acc = digits.accuracy(baseline, data.x_test, data.y_test)
    assert base_acc > 0.95, f"the dense baseline should learn digits; got {base_acc:.3f}"
    model, report = digits.prune_with_recipe(baseline, data, overrides={"final_sparsity": 0.9})
    assert digits.overall_sparsity(report) == pytest.approx(0.9, abs=1e-3)
    assert all(r.sparsity == pytest.approx(0.9, abs=1e-3) for r in report)
    acc = digits.accuracy(model, data.x_test, data.y_test)
    assert acc >= 0.99 * base_acc, f"90% pruned: {acc:.4f} < 99% of baseline {base_acc:.4f}"

    exported = export_onnx(model, data.x_test[:2], tmp_path / "digits90.onnx")
    assert max(exported.weight_sparsity.values()) == pytest.approx(0.9, abs=1e-3)
    check = check_in_engine(exported.path, model, [data.x_test.numpy()], rtol=1e-4, atol=1e-4, num_cores=1)
    assert check.ok, check
    assert check.same_argmax == 1.0
    assert np.isfinite(check.max_abs_diff)


@pytest.mark.slow
@pytest.mark.parametrize("level", [0.8, 0.95])
def test_gmp_other_levels(trained, level):
    data, baseline = trained
    base_acc = digits.accuracy(baseline, data.x_test, data.y_test)
    model, report = digits.prune_with_recipe(baseline, data, overrides={"final_sparsity": level})
    assert digits.overall_sparsity(report) == pytest.approx(level, abs=1e-3)
    assert digits.accuracy(model, data.x_test, data.y_test) >= 0.98 * base_acc
