import json

import pytest

from sparseinfer.cli import main

pytest.importorskip("sparseinfer._core", reason="the native core is not built (tools/build_inplace.sh)")


def test_sparsify_zoo_one_shot_exports_and_checks(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_ZOO_DIR", str(tmp_path / "zoo"))
    status = main(["sparsify", "zoo:mlp6", "--recipe", "gmp90", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert status == 0
    assert "ONE-SHOT" in out and "EQUAL" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mode"] == "one-shot" and report["engine_check"]["equal"]
    assert report["sparsity"]["0.weight"] == pytest.approx(0.9, abs=1e-3)
    assert (tmp_path / "out" / "model.onnx").is_file()


@pytest.mark.parametrize("argv, message", [
    (["zoo:mlp6", "--recipe", "no_such_recipe"], "neither a file nor a builtin"),
    (["zoo:mlp6", "--recipe", "gmp90", "--set", "final_sparsity=0.8"], "defines no variable 'final_sparsity'"),
    (["zoo:mlp6-pruned90", "--recipe", "gmp90"], "expected a dense zoo model"),
    (["resnet", "--recipe", "gmp90"], "expected zoo:NAME or 'digits'"),
])
def test_sparsify_errors(tmp_path, capsys, argv, message):
    assert main(["sparsify", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
