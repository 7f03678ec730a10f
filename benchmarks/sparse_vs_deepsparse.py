"""Pruned models: sparseinfer vs ONNX Runtime vs DeepSparse, same machine, same run, all cores.

Every engine times slices of sync runs (one request at a time) in rounds whose engine order
alternates, after a warm-up; medians and ratios are reported. DeepSparse runs in its own
process from its own virtual environment (deepsparse==1.8.0 pins older onnx/numpy than ours),
started with --deepsparse-python; without it, DeepSparse is skipped and the JSON says so.

    python -m venv /opt/ds && /opt/ds/bin/pip install deepsparse==1.8.0
    python benchmarks/sparse_vs_deepsparse.py --deepsparse-python /opt/ds/bin/python
    python benchmarks/sparse_vs_deepsparse.py --cases resnet50-pruned90:1 --time 10

Prints one JSON document: per case each engine's latency stats, items/s, peak RSS of its
process, the ratios the sparse-execution issue sets targets on, sparseinfer's compiled weight
bytes and its per-layer kernel choices (dense or sparse, measured ms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

import sparseinfer
from sparseinfer import _core, zoo
from sparseinfer.benchmark import make_inputs, make_runner
from sparseinfer.benchmark.memory import measure_in_subprocess
from sparseinfer.benchmark.timing import stats_from

HERE = Path(__file__).resolve().parent
DEFAULT_CASES = ("resnet50-pruned90:1,resnet50-pruned90:64,resnet50-pruned95:1,resnet50-pruned95:64,"
                 "vgg16-pruned90:1,vgg16-pruned90:64,resnet50:64")


class LocalEngine:
    """An engine in this process: times its own slices."""

    def __init__(self, name: str, model: onnx.ModelProto, batch: int, cores: int, feeds: dict):
        self.name, self.feeds = name, feeds
        self.run = make_runner(name, model, batch, cores)
        self.run(feeds)

    def time_slice(self, seconds: float, min_iters: int) -> list[float]:
        lat: list[float] = []
        end = time.perf_counter() + seconds
        while len(lat) < min_iters or time.perf_counter() < end:
            t0 = time.perf_counter()
            self.run(self.feeds)
            lat.append(time.perf_counter() - t0)
        return lat

    def close(self) -> None:
        self.run = None


class DeepSparseEngine:
    """DeepSparse in a child process of another Python (its venv); see _deepsparse_worker.py."""

    name = "deepsparse"

    def __init__(self, python: str, model_path: str, batch: int, cores: int, feeds: dict, input_names: list[str]):
        self._tmp = tempfile.TemporaryDirectory()
        inputs = os.path.join(self._tmp.name, "inputs.npz")
        np.savez(inputs, *[feeds[n] for n in input_names])
        self.proc = subprocess.Popen(
            [python, str(HERE / "_deepsparse_worker.py"), "--model", model_path, "--batch-size", str(batch),
             "--num-cores", str(cores), "--inputs", inputs],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self._read()
        self.version, self.peak_rss_mib = first["version"], first["peak_rss_mib"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"DeepSparse worker died: {self.proc.stderr.read()[-3000:]}")
        return json.loads(line)

    def _ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def time_slice(self, seconds: float, min_iters: int) -> list[float]:
        answer = self._ask(f"time {seconds} {min_iters}")
        self.peak_rss_mib = answer["peak_rss_mib"]
        return answer["latencies_s"]

    def outputs(self) -> list[np.ndarray]:
        path = os.path.join(self._tmp.name, "out.npz")
        self._ask(f"outputs {path}")
        data = np.load(path)
        return [data[f"arr_{i}"] for i in range(len(data.files))]

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - best effort
            self.proc.kill()
        self._tmp.cleanup()


def run_case(stub: str, batch: int, cores: int, a: argparse.Namespace) -> dict:
    path = str(zoo.resolve(f"zoo:{stub}"))
    model = onnx.load(path)
    feeds = make_inputs(model, batch)
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    engines: list = [LocalEngine("sparseinfer", model, batch, cores, feeds),
                     LocalEngine("onnxruntime", model, batch, cores, feeds)]
    skipped = {}
    if a.deepsparse_python:
        try:
            engines.append(DeepSparseEngine(a.deepsparse_python, path, batch, cores, feeds, names))
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            skipped["deepsparse"] = str(exc)[-500:]
    else:
        skipped["deepsparse"] = "not run: pass --deepsparse-python PATH (a venv with deepsparse==1.8.0)"
    # Correctness next to speed: every engine's outputs against ONNX Runtime's.
    ref = engines[1].run(feeds)
    diffs = {"sparseinfer": max(float(np.max(np.abs(g - w))) for g, w in zip(engines[0].run(feeds), ref))}
    for e in engines[2:]:
        diffs[e.name] = max(float(np.max(np.abs(g - w))) for g, w in zip(e.outputs(), ref))
    for e in engines:  # warm-up
        e.time_slice(a.warmup, 2)
    lat = {e.name: [] for e in engines}
    med = {e.name: [] for e in engines}
    slice_s = a.time / a.rounds / len(engines)
    for r in range(a.rounds):
        for e in (engines if r % 2 == 0 else engines[::-1]):
            this = e.time_slice(slice_s, 2)
            lat[e.name] += this
            med[e.name].append(float(np.median(this)) * 1e3)
    stats = {n: stats_from(n, batch, lat[n], med[n]).as_dict() for n in lat}
    for s in stats.values():
        s["items_per_s_median"] = batch / (s["median_ms"] / 1e3)
    row = {"model": f"zoo:{stub}", "batch_size": batch, "num_cores": cores, "engines": stats,
           "max_abs_diff_vs_onnxruntime": diffs, "skipped": skipped}
    si = sparseinfer.compile_model(model, batch_size=batch, num_cores=cores)
    row["sparseinfer_weight_bytes"] = si.weight_bytes
    row["sparseinfer_kernels"] = {
        "sparse": sum(1 for r in si.node_report if r.choice and r.choice.get("chosen") == "sparse"),
        "dense": sum(1 for r in si.node_report if r.choice and r.choice.get("chosen") == "dense")}
    for e in engines:
        if isinstance(e, DeepSparseEngine):
            row.setdefault("peak_rss_mib", {})["deepsparse"] = e.peak_rss_mib
            row["deepsparse_version"] = e.version
        e.close()
    if a.memory:
        for n in ("sparseinfer", "onnxruntime"):
            row.setdefault("peak_rss_mib", {})[n] = measure_in_subprocess(n, path, batch, cores)["peak_rss_mib"]
    si_thr = stats["sparseinfer"]["items_per_s_median"]
    row["throughput_ratio_vs"] = {n: si_thr / stats[n]["items_per_s_median"] for n in stats if n != "sparseinfer"}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated zoo NAME[-VARIANT]:batch pairs")
    p.add_argument("--num-cores", type=int, default=_core.physical_core_count())
    p.add_argument("--time", type=float, default=20.0, help="timed seconds per case, split over engines")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--deepsparse-python", default=None, help="python of a venv with deepsparse==1.8.0")
    p.add_argument("--memory", action="store_true", help="peak RSS of sparseinfer and ONNX Runtime, own process")
    a = p.parse_args()
    results = []
    for case in a.cases.split(","):
        stub, batch = case.rsplit(":", 1)
        row = run_case(stub, int(batch), a.num_cores, a)
        results.append(row)
        print(json.dumps({"progress": case, "throughput_ratio_vs": row["throughput_ratio_vs"]}), file=sys.stderr)
    by = {(r["model"], r["batch_size"]): r for r in results}
    targets = []
    for (model, batch), r in by.items():
        if "deepsparse" in r["engines"]:
            targets.append({"case": f"{model} b{batch}", "rule": "throughput vs deepsparse >= 1.0",
                            "value": r["throughput_ratio_vs"]["deepsparse"]})
    p90, dense = by.get(("zoo:resnet50-pruned90", 64)), by.get(("zoo:resnet50", 64))
    if p90 and dense:
        targets.append({"case": "resnet50-pruned90 b64 vs our dense resnet50 b64", "rule": ">= 2.5",
                        "value": p90["engines"]["sparseinfer"]["items_per_s_median"]
                        / dense["engines"]["sparseinfer"]["items_per_s_median"]})
        targets.append({"case": "compiled weight bytes resnet50-pruned90 / resnet50", "rule": "<= 0.25",
                        "value": p90["sparseinfer_weight_bytes"] / dense["sparseinfer_weight_bytes"]})
    print(json.dumps({"machine": {"isa": _core.active_isa(), "cores": a.num_cores},
                      "method": f"sync; {a.warmup}s warm-up per engine, {a.rounds} rounds alternating engine "
                                f"order, {a.time}s per case; medians", "targets": targets, "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
