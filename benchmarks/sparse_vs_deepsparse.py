"""Pruned models: sparseinfer vs ONNX Runtime vs DeepSparse, same machine, same run, all cores.

Every engine times slices of sync runs (one request at a time) in rounds whose engine order
alternates, after a warm-up; medians and ratios are reported. DeepSparse runs in its own
process from its own virtual environment (deepsparse==1.8.0 pins older onnx/numpy than ours),
given by --deepsparse-python or $SPARSEINFER_DEEPSPARSE_PYTHON (the same worker as
`sparseinfer benchmark/compare --engine deepsparse`); without it, DeepSparse is skipped and
the JSON says why.

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
import sys
import tempfile

import onnx

import sparseinfer
from sparseinfer import _core, zoo
from sparseinfer.benchmark import make_inputs, measure_sync, open_engine
from sparseinfer.benchmark.compare import output_diff
from sparseinfer.benchmark.inputs import with_sequence
from sparseinfer.benchmark.memory import measure_in_subprocess
from sparseinfer.benchmark.runners import DEEPSPARSE_PYTHON_ENV, PeerNotInstalled

DEFAULT_CASES = ("resnet50-pruned90:1,resnet50-pruned90:64,resnet50-pruned95:1,resnet50-pruned95:64,"
                 "vgg16-pruned90:1,vgg16-pruned90:64,resnet50:64,bert_base-pruned90:1:128")


def run_case(stub: str, batch: int, cores: int, a: argparse.Namespace, seq: int | None = None) -> dict:
    path = str(zoo.resolve(f"zoo:{stub}"))
    model = onnx.load(path)
    if seq is not None:  # a text model: every engine gets a copy with its sequence axis fixed
        model = with_sequence(model, seq)
        path = os.path.join(tempfile.mkdtemp(prefix="sparseinfer-seq"), f"{stub}-seq{seq}.onnx")
        onnx.save(model, path)
    feeds = make_inputs(model, batch)
    engines = {}
    skipped = {}
    try:
        for name in ("sparseinfer", "onnxruntime", "deepsparse"):
            try:  # each in its own process (DeepSparse from its own venv): spinning pool threads
                # of one engine would otherwise take cores from the next (sparseinfer.benchmark.worker)
                engines[name] = open_engine(name, model, path, feeds, batch, cores, isolate=True)
            except (PeerNotInstalled, RuntimeError) as exc:
                if name != "deepsparse":
                    raise
                skipped[name] = str(exc)[-500:]
        # Correctness next to speed: every engine's outputs against ONNX Runtime's.
        ref = engines["onnxruntime"].outputs()
        diffs = {n: output_diff(e.outputs(), ref)[0] for n, e in engines.items() if n != "onnxruntime"}
        results = measure_sync(engines, batch, cores, warmup_s=a.warmup, time_s=a.time, rounds=a.rounds,
                               min_iters_per_round=2)
        ds = engines.get("deepsparse")
        version = ds.ready["version"] if ds is not None else None
    finally:
        for e in engines.values():
            e.close()
    stats = {n: r.as_dict() for n, r in results.items()}
    for s in stats.values():
        s["items_per_s_median"] = batch / (s["median_ms"] / 1e3)
    row = {"model": f"zoo:{stub}", "batch_size": batch, "sequence_length": seq, "num_cores": cores, "engines": stats,
           "max_abs_diff_vs_onnxruntime": diffs, "skipped": skipped}
    si = sparseinfer.compile_model(model, batch_size=batch, num_cores=cores)
    row["sparseinfer_weight_bytes"] = si.weight_bytes
    row["sparseinfer_kernels"] = {
        kind: sum(1 for r in si.node_report if r.choice and r.choice.get("chosen") == kind)
        for kind in ("dense", "sparse", "generated")}
    if "deepsparse" in stats:  # its own process's peak resident set
        row.setdefault("peak_rss_mib", {})["deepsparse"] = stats["deepsparse"]["peak_rss_mib"]
        row["deepsparse_version"] = version
    if a.memory:
        for n in ("sparseinfer", "onnxruntime"):
            row.setdefault("peak_rss_mib", {})[n] = measure_in_subprocess(n, path, batch, cores)["peak_rss_mib"]
    si_thr = stats["sparseinfer"]["items_per_s_median"]
    row["throughput_ratio_vs"] = {n: si_thr / stats[n]["items_per_s_median"] for n in stats if n != "sparseinfer"}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=DEFAULT_CASES,
                   help="comma-separated zoo NAME[-VARIANT]:batch pairs, NAME:batch:sequence for text models")
    p.add_argument("--num-cores", type=int, default=_core.physical_core_count())
    p.add_argument("--time", type=float, default=20.0, help="timed seconds per case, split over engines")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--deepsparse-python", default=None,
                   help=f"python of a venv with deepsparse==1.8.0 (default: ${DEEPSPARSE_PYTHON_ENV})")
    p.add_argument("--memory", action="store_true", help="peak RSS of sparseinfer and ONNX Runtime, own process")
    a = p.parse_args()
    if a.deepsparse_python:
        os.environ[DEEPSPARSE_PYTHON_ENV] = a.deepsparse_python
    results = []
    for case in a.cases.split(","):
        stub, batch, *seq = case.split(":")
        row = run_case(stub, int(batch), a.num_cores, a, int(seq[0]) if seq else None)
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
