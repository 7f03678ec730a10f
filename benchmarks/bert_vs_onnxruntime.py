"""BERT-family encoders, dense fp32: sparseinfer vs ONNX Runtime, same run, alternating.

Prints one JSON document: per (model, batch, sequence length) both engines' latency stats,
the ratios the transformer issue sets targets on (bert_base at sequence 128: batch 1 latency
at most 1.15x ONNX Runtime's, batch 16 throughput at least 0.9x), achieved GFLOP/s, and the
fraction of nodes that ran natively. Both engines get the model with its sequence axis fixed
(ONNX Runtime with all its graph optimisations, including its own attention fusions).

    python benchmarks/bert_vs_onnxruntime.py                        # the issue's set
    python benchmarks/bert_vs_onnxruntime.py --cases minilm_l6:1:128 --time 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import onnx

import sparseinfer
from sparseinfer import _core, zoo
from sparseinfer.benchmark.compare import compare
from sparseinfer.benchmark.inputs import with_sequence
from sparseinfer.graph.flops import analyze_flops

# (zoo name, batch, sequence) -> (target, what the ratio means)
TARGETS = {
    ("bert_base", 1, 128): (1.15, "latency sparseinfer / onnxruntime <="),
    ("bert_base", 16, 128): (0.9, "throughput sparseinfer / onnxruntime >="),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(f"{m}:{b}:{s}" for m, b, s in TARGETS),
                   help="comma-separated zoo_name:batch:sequence triples")
    p.add_argument("--num-cores", type=int, default=_core.physical_core_count())
    p.add_argument("--time", type=float, default=20.0, help="timed seconds per case (split over engines)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args()

    results = []
    for case in a.cases.split(","):
        name, batch, seq = case.split(":")
        batch, seq = int(batch), int(seq)
        path = zoo.resolve(f"zoo:{name}")
        model = with_sequence(onnx.load(path), seq)
        consts = {t.name for t in model.graph.initializer}
        shapes = ",".join(f"{i.name}:{batch}x{seq}" for i in model.graph.input if i.name not in consts)
        # Each engine in its own process (`sparseinfer compare`'s workers), as for the CNNs.
        doc = compare(str(path), ["sparseinfer", "onnxruntime"], batch_size=batch, num_cores=a.num_cores,
                      time_s=a.time, warmup_s=a.warmup, rounds=a.rounds, input_shapes=shapes, progress=False)
        stats = {r["engine"]: r for r in doc["rows"]}
        si, ort = stats["sparseinfer"], stats["onnxruntime"]
        flops = analyze_flops(model, dim_values={"batch": batch, "sequence": seq}).flops
        report = sparseinfer.compile_model(model, batch_size=batch, num_cores=a.num_cores).node_report
        row = {
            "model": f"zoo:{name}", "batch_size": batch, "sequence_length": seq, "num_cores": a.num_cores,
            "engines": stats,
            "latency_ratio_median": si["median_ms"] / ort["median_ms"],
            "throughput_ratio": si["items_per_s"] / ort["items_per_s"],
            "memory_ratio": si["peak_rss_mib"] / ort["peak_rss_mib"],
            "gflops_per_s": {k: flops / (v["median_ms"] / 1e3) / 1e9 for k, v in stats.items()},
            "fraction_native": sum(r.native for r in report) / len(report),
            "fallback_ops": sorted({r.op for r in report if not r.native}),
        }
        target = TARGETS.get((name, batch, seq))
        if target:
            value = row["latency_ratio_median"] if "latency" in target[1] else row["throughput_ratio"]
            ok = value <= target[0] if "<=" in target[1] else value >= target[0]
            row["target"] = {"rule": f"{target[1]} {target[0]}", "value": value, "met": ok}
        results.append(row)
        print(json.dumps({"progress": case, "latency_ratio_median": row["latency_ratio_median"],
                          "throughput_ratio": row["throughput_ratio"]}), file=sys.stderr)
    import onnxruntime

    print(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "isa": _core.active_isa(),
                    "cores": a.num_cores, "cpus_visible": os.cpu_count()},
        "versions": {"sparseinfer": sparseinfer.__version__, "onnxruntime": onnxruntime.__version__},
        "method": f"sync, one request at a time, each engine in its own process; {a.warmup}s warm-up per "
                  f"engine, then {a.rounds} rounds alternating engine order, {a.time}s per engine per case; "
                  "medians; peak RSS of each engine's process",
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
