"""Dense fp32: sparseinfer vs ONNX Runtime on zoo models, same run, alternating, all cores.

Prints one JSON document: per (model, batch) both engines' latency stats, the ratios the
engine-core issue sets targets on, achieved GFLOP/s against the machine's measured fp32 peak,
and (with --memory) each engine's peak RSS measured in its own process.

    python benchmarks/engine_vs_onnxruntime.py                      # the issue's full set
    python benchmarks/engine_vs_onnxruntime.py --cases mlp6:1 --time 5
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
from sparseinfer.benchmark import LocalEngine, make_inputs, measure_sync
from sparseinfer.benchmark.memory import measure_in_subprocess
from sparseinfer.graph.flops import analyze_flops

# (zoo stub, batch size, target ratio, what the ratio means)
TARGETS = {
    ("resnet50", 1): (1.15, "latency sparseinfer / onnxruntime <="),
    ("resnet50", 64): (0.9, "throughput sparseinfer / onnxruntime >="),
    ("vgg16", 1): (1.15, "latency sparseinfer / onnxruntime <="),
    ("mobilenet_v2", 1): (1.3, "latency sparseinfer / onnxruntime <="),
    ("mlp6", 1): (0.9, "throughput sparseinfer / onnxruntime >="),
}


def fp32_peak_gflops(num_cores: int) -> float | None:
    """Measured fp32 FMA peak: the single-thread probe of the active ISA (best of a few short
    runs) times the cores; None on the portable ISA (no probe)."""
    isa = _core.active_isa()
    if isa == "portable":
        return None
    return num_cores * max(float(_core._gemm_fma_peak(isa, 0.1)) for _ in range(3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(f"{m}:{b}" for m, b in TARGETS),
                   help="comma-separated zoo_name:batch pairs")
    p.add_argument("--num-cores", type=int, default=_core.physical_core_count())
    p.add_argument("--time", type=float, default=20.0, help="timed seconds per case (split over engines)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--memory", action="store_true", help="also measure peak RSS per engine (own process)")
    a = p.parse_args()

    results = []
    peak = fp32_peak_gflops(a.num_cores)
    for case in a.cases.split(","):
        name, batch = case.split(":")
        batch = int(batch)
        path = zoo.resolve(f"zoo:{name}")
        model = onnx.load(path)
        feeds = make_inputs(model, batch)
        engines = {e: LocalEngine(e, model, feeds, batch, a.num_cores) for e in ("sparseinfer", "onnxruntime")}
        stats = measure_sync(engines, batch, a.num_cores, warmup_s=a.warmup, time_s=a.time, rounds=a.rounds)
        si, ort = stats["sparseinfer"], stats["onnxruntime"]
        flops = analyze_flops(model, dim_values={"batch": batch, "sequence": 128}).flops
        row = {
            "model": f"zoo:{name}", "batch_size": batch, "num_cores": a.num_cores,
            "engines": {k: v.as_dict() for k, v in stats.items()},
            "latency_ratio_median": si.median_ms / ort.median_ms,
            "throughput_ratio": si.items_per_s / ort.items_per_s,
            "gflops_per_s": {k: flops / (v.median_ms / 1e3) / 1e9 for k, v in stats.items()},
        }
        if peak:
            row["fraction_of_peak"] = {k: g / peak for k, g in row["gflops_per_s"].items()}
        target = TARGETS.get((name, batch))
        if target:
            value = row["latency_ratio_median"] if "latency" in target[1] else row["throughput_ratio"]
            ok = value <= target[0] if "<=" in target[1] else value >= target[0]
            row["target"] = {"rule": f"{target[1]} {target[0]}", "value": value, "met": ok}
        if a.memory:
            row["peak_rss_mib"] = {e: measure_in_subprocess(e, path, batch, a.num_cores) for e in engines}
            row["memory_ratio"] = (row["peak_rss_mib"]["sparseinfer"]["peak_rss_mib"]
                                   / row["peak_rss_mib"]["onnxruntime"]["peak_rss_mib"])
        node_report = sparseinfer.compile_model(model, batch_size=batch, num_cores=a.num_cores).node_report
        row["fraction_native"] = sum(r.native for r in node_report) / len(node_report)
        results.append(row)
        print(json.dumps({"progress": case, "latency_ratio_median": row["latency_ratio_median"],
                          "throughput_ratio": row["throughput_ratio"]}), file=sys.stderr)
    import onnxruntime

    print(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "isa": _core.active_isa(),
                    "cores": a.num_cores, "fp32_peak_gflops": peak, "cpus_visible": os.cpu_count()},
        "versions": {"sparseinfer": sparseinfer.__version__, "onnxruntime": onnxruntime.__version__},
        "method": f"sync, one request at a time; {a.warmup}s warm-up per engine, then {a.rounds} rounds "
                  f"alternating engine order, {a.time}s total per case; medians",
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
