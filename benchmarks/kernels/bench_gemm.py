"""Speed of every f32 GEMM variant vs numpy.matmul (OpenBLAS), same process, same run.

Prints JSON: per shape and thread count, GFLOP/s of each variant's sgemm_packed called from
Python (B packed once, as the engine does; output allocated per call, like numpy.matmul) and of
numpy.matmul: the median of repeats after warm-up and the best repeat (the machines are shared:
the best is the least disturbed), the median ratio to numpy, the fraction of the FMA peak, and
the avx512 variant timed in a C++ loop (`native`: no Python call overhead, as the engine calls
it). Peak = threads x the single-thread FMA probe (16 independent FMA chains, best of several
short runs: clock-independent). Timings alternate between candidates so that noise from other
users of the machine hits all of them alike.

    python benchmarks/kernels/bench_gemm.py [--quick] [--threads 1,2] [--variants avx512,avx2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

from harness import _core, alternate, machine  # noqa: E402

# (name, M, N, K): 1x1 convs of ResNet-50 at batch 1 as GEMM (M = H*W), BERT-base linear
# layers at sequence 128, and the engine's tiny-MLP layer.
SHAPES = [
    ("resnet50.conv2_1x1_reduce", 3136, 64, 256),
    ("resnet50.conv2_1x1_expand", 3136, 256, 64),
    ("resnet50.conv3_1x1_expand", 784, 512, 128),
    ("resnet50.conv4_1x1_reduce", 196, 256, 1024),
    ("resnet50.conv5_1x1_expand", 49, 2048, 512),
    ("bert_base.attn_out", 128, 768, 768),
    ("bert_base.ffn_up", 128, 3072, 768),
    ("bert_base.ffn_down", 128, 768, 3072),
    ("mlp.1x200x128", 1, 128, 200),
]


def supported_variants() -> list[str]:
    order = ["portable", "avx2", "avx512"]
    best = order.index(_core.best_isa())
    return [v for v in _core.gemm_variants() if order.index(v) <= best]




def bench_shape(M, N, K, threads, variants, repeats, min_time):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    cands = {}
    for v in variants:
        pb = _core.PackedB(b, False, v)
        cands[v] = (lambda pb=pb: _core.sgemm_packed(a, pb, num_threads=threads))
    cands["numpy"] = lambda: np.matmul(a, b)
    native = None
    if variants:
        nv = "avx512" if "avx512" in variants else variants[-1]
        pb_native = _core.PackedB(b, False, nv)
        iters = max(1, int(min_time / 5 * 100e9 / (2.0 * M * N * K)))
        native = (nv, lambda: _core._sgemm_packed_time(a, pb_native, iters, threads))
    samples = alternate(cands, repeats, min_time)  # (warms up thread pools, caches, OpenBLAS buffers)
    native_samples = [native[1]() for _ in range(repeats)] if native else []
    flops = 2.0 * M * N * K
    med = {k: flops / statistics.median(s) * 1e-9 for k, s in samples.items()}
    best = {k: flops / min(s) * 1e-9 for k, s in samples.items()}
    if native:
        med[f"{native[0]}_native"] = flops / statistics.median(native_samples) * 1e-9
        best[f"{native[0]}_native"] = flops / min(native_samples) * 1e-9
    return med, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, shorter samples")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default=None, help="comma list; default: all supported")
    ap.add_argument("--shapes", default=None, help="comma list of shape-name substrings")
    args = ap.parse_args()

    variants = args.variants.split(",") if args.variants else supported_variants()
    threads_list = [int(t) for t in args.threads.split(",")]
    repeats, min_time = (3, 0.05) if args.quick else (7, 0.15)
    shapes = SHAPES
    if args.shapes:
        keys = args.shapes.split(",")
        shapes = [s for s in SHAPES if any(k in s[0] for k in keys)]

    mach = machine()
    peak1 = mach["fma_peak_gflops_1thread"]
    out = {
        "benchmark": "f32 gemm (sgemm_packed) vs numpy.matmul",
        "machine": mach,
        "numpy_blas": _blas_name(),
        "unit": "GFLOP/s (gflops: median of repeats; gflops_best: best repeat)",
        "results": [],
    }
    for name, M, N, K in shapes:
        for t in threads_list:
            if threadpool_limits is not None:
                with threadpool_limits(limits=t):
                    g, gbest = bench_shape(M, N, K, t, variants, repeats, min_time)
            else:
                g, gbest = bench_shape(M, N, K, t, variants, repeats, min_time)
            row = {"shape": name, "M": M, "N": N, "K": K, "threads": t,
                   "gflops": {k: round(v, 1) for k, v in g.items()},
                   "gflops_best": {k: round(v, 1) for k, v in gbest.items()},
                   "vs_numpy": {k: round(v / g["numpy"], 2) for k, v in g.items() if k != "numpy"}}
            if peak1:
                row["fraction_of_peak"] = {k: round(v / (peak1 * t), 3) for k, v in g.items()}
            out["results"].append(row)
            print(f"# {name:28s} t={t} " + " ".join(f"{k}={v:.1f}" for k, v in g.items()),
                  file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


def _blas_name() -> str:
    if threadpool_limits is None:
        return "unknown"
    from threadpoolctl import threadpool_info

    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in infos) or "unknown"


if __name__ == "__main__":
    main()
