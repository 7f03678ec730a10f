"""The command line: `sparseinfer zoo list` / `zoo export`, run as a user would (subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(*args: str, cwd: Path | None = None, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_zoo_list():
    res = run("-m", "sparseinfer.cli", "zoo", "list")
    assert res.returncode == 0, res.stderr
    from sparseinfer import zoo

    for e in zoo.list_models():
        line = next(line for line in res.stdout.splitlines() if line.startswith(e.name + " "))
        assert e.task in line and e.weights in line
    assert "Nx3x224x224" in res.stdout and "Nx3x299x299" in res.stdout and "25.56M" in res.stdout
    assert "pruned90-block4" in res.stdout and "speed measurement only" in res.stdout


def test_zoo_export_prints_path_and_card(tmp_path):
    pytest.importorskip("torch")
    res = run("-m", "sparseinfer", "zoo", "export", "mlp6", "--dir", str(tmp_path / "z"),
              env_extra={"SPARSEINFER_ZOO_DIR": str(tmp_path / "unused")})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    path = Path(lines[0])
    assert path == tmp_path / "z" / "mlp6-dense" / "model.onnx" and path.is_file()
    assert (path.parent / "card.json").is_file() and not (tmp_path / "unused").exists()
    assert "zoo:mlp6-dense" in res.stdout and "no accuracy is claimed" in res.stdout
    assert "parameters: 36,737" in res.stdout
    again = run("-m", "sparseinfer", "zoo", "export", "zoo:mlp6-dense", "--dir", str(tmp_path / "z"))
    assert again.returncode == 0 and "(cached)" in again.stdout
    forced = run("-m", "sparseinfer", "zoo", "export", "mlp6", "--dir", str(tmp_path / "z"), "--force")
    assert forced.returncode == 0 and "(cached)" not in forced.stdout


@pytest.mark.parametrize("stub,message", [("nope", "unknown zoo model 'nope'"),
                                          ("zoo:resnet50-pruned42", "unknown variant 'pruned42'")])
def test_zoo_export_bad_stub_is_a_clean_error(stub, message, tmp_path):
    res = run("-m", "sparseinfer", "zoo", "export", stub, "--dir", str(tmp_path))
    assert res.returncode != 0
    assert message in res.stderr and "available: resnet18, resnet50" in res.stderr
    assert "Traceback" not in res.stderr and not res.stdout


def test_usage_errors():
    res = run("-m", "sparseinfer")
    assert res.returncode != 0 and "COMMAND" in res.stderr
    res = run("-m", "sparseinfer", "zoo")
    assert res.returncode != 0 and "Traceback" not in res.stderr


def test_commands_register_in_process(capsys):
    from sparseinfer import cli

    @cli.command("hello-test", help="test command")
    def _hello(parser):
        parser.add_argument("--who", default="world")
        return lambda args: print(f"hello {args.who}") or 0

    try:
        assert cli.main(["hello-test", "--who", "zoo"]) == 0
        assert capsys.readouterr().out == "hello zoo\n"
    finally:
        cli._COMMANDS.pop("hello-test")


def test_benchmark_runs_both_engines_and_exports_json(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    res = run("-m", "sparseinfer", "benchmark", "zoo:mlp6", "--batch-size", "2", "--time", "0.6",
              "--warmup-time", "0.2", "--rounds", "2", "--export-json", str(out),
              env_extra={"SPARSEINFER_ZOO_DIR": str(tmp_path / "zoo")})
    assert res.returncode == 0, res.stderr
    import json

    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"sparseinfer", "onnxruntime"} and doc["batch_size"] == 2
    for engine, r in doc["results"].items():
        assert engine in res.stdout
        assert r["iterations"] > 0 and r["median_ms"] > 0
        # sync mode: items/s is batch / mean latency
        assert r["items_per_s"] == pytest.approx(2 / (r["mean_ms"] / 1e3), rel=1e-6)


@pytest.mark.parametrize("args,message", [(["/nonexistent/model.onnx"], "/nonexistent/model.onnx"),
                                          (["zoo:nope"], "unknown zoo model 'nope'"),
                                          (["zoo:mlp6", "--engines", "sparseinfer,nope"], "unknown engine")])
def test_benchmark_bad_input_is_a_clean_error(args, message, tmp_path):
    res = run("-m", "sparseinfer", "benchmark", *args, "--time", "0.2",
              env_extra={"SPARSEINFER_ZOO_DIR": str(tmp_path / "zoo")})
    assert res.returncode != 0
    assert message in res.stderr and "Traceback" not in res.stderr
