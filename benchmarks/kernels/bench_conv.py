"""Speed of every f32 NCHWc conv variant on the layer shapes of ResNet-50, VGG-16 and MobileNetV2.

Prints JSON: per layer and thread count, GFLOP/s of each supported ISA variant of
`_core.ConvNchwc` (NCHWc in and out, weights packed once, timed in a C++ loop into a preallocated output, as the
engine runs it) and of ONNX
Runtime on the same convolution as a one-node model (NCHW in and out, so its time includes the
reorders its NCHWc transformer inserts: a reference point, not a like-for-like peer). A sample is
the fastest call within a short window (the machines are shared); medians of
repeats after warm-up, candidates alternating within each repeat so that noise from other users
of the machine hits all of them alike; the fraction of the measured FMA peak (threads x the
single-thread probe).

    python benchmarks/kernels/bench_conv.py [--quick] [--threads 1,2] [--layers res50,vgg] [--no-ort]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from harness import _core, alternate, machine

# (name, C, K, H(=W), R(=S), stride, pad, groups) at batch 1.
LAYERS = [
    ("res50.conv1_7x7s2", 3, 64, 224, 7, 2, 3, 1),
    ("res50.l1_1x1_64_64", 64, 64, 56, 1, 1, 0, 1),
    ("res50.l1_3x3_64", 64, 64, 56, 3, 1, 1, 1),
    ("res50.l1_1x1_64_256", 64, 256, 56, 1, 1, 0, 1),
    ("res50.l1_1x1_256_64", 256, 64, 56, 1, 1, 0, 1),
    ("res50.l2_3x3s2_128", 128, 128, 56, 3, 2, 1, 1),
    ("res50.l2_1x1_128_512", 128, 512, 28, 1, 1, 0, 1),
    ("res50.l2_1x1_512_128", 512, 128, 28, 1, 1, 0, 1),
    ("res50.l2_3x3_128", 128, 128, 28, 3, 1, 1, 1),
    ("res50.l3_3x3_256", 256, 256, 14, 3, 1, 1, 1),
    ("res50.l3_1x1_1024_256", 1024, 256, 14, 1, 1, 0, 1),
    ("res50.l3_1x1_256_1024", 256, 1024, 14, 1, 1, 0, 1),
    ("res50.l4_3x3_512", 512, 512, 7, 3, 1, 1, 1),
    ("res50.l4_1x1_2048_512", 2048, 512, 7, 1, 1, 0, 1),
    ("res50.l4_1x1_512_2048", 512, 2048, 7, 1, 1, 0, 1),
    ("res50.down_1x1s2_256_512", 256, 512, 56, 1, 2, 0, 1),
    ("vgg.3x3_64_224", 64, 64, 224, 3, 1, 1, 1),
    ("vgg.3x3_128_112", 128, 128, 112, 3, 1, 1, 1),
    ("vgg.3x3_256_56", 256, 256, 56, 3, 1, 1, 1),
    ("vgg.3x3_512_28", 512, 512, 28, 3, 1, 1, 1),
    ("vgg.3x3_512_14", 512, 512, 14, 3, 1, 1, 1),
    ("mbv2.dw3x3_144_56", 144, 144, 56, 3, 1, 1, 144),
    ("mbv2.dw3x3s2_144_56", 144, 144, 56, 3, 2, 1, 144),
    ("mbv2.1x1_24_144_56", 24, 144, 56, 1, 1, 0, 1),
]


def supported_variants() -> list[str]:
    order = ["portable", "avx2", "avx512"]
    best = order.index(_core.best_isa())
    return order[: best + 1]


def best_call(fn, min_time: float) -> float:
    """Seconds per call: the best of calls within min_time (each call of ours already averages
    3 runs timed in C++); ONNX Runtime's calls are timed here, each one run."""
    best = float("inf")
    end = time.perf_counter() + min_time
    while True:
        t0 = time.perf_counter()
        r = fn()
        dt = time.perf_counter() - t0
        best = min(best, r if isinstance(r, float) else dt)
        if time.perf_counter() > end:
            return best


def ort_conv(w: np.ndarray, stride: int, pad: int, groups: int, x: np.ndarray, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper


    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[stride] * 2, pads=[pad] * 4, group=groups)
    g = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: s.run(None, {"x": x})


def bench_layer(layer, threads, variants, repeats, min_time, with_ort):
    name, C, K, H, R, stride, pad, groups = layer
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((K, C // groups, R, R)) * 0.1).astype(np.float32)
    x = rng.standard_normal((1, C, H, H)).astype(np.float32)
    cands, kernels = {}, {}
    for v in variants:
        conv = _core.ConvNchwc(w, None, stride=(stride, stride), pads=(pad,) * 4, groups=groups,
                               input_shape=(1, C, H, H), isa=v)
        xin = x if conv.input_is_nchw else _core.reorder_to_nchwc(x, v)
        cands[v] = (lambda conv=conv, xin=xin: conv._time_runs(xin, 3, threads))
        kernels[v] = conv.kernel_name
    if with_ort:
        cands["onnxruntime"] = ort_conv(w, stride, pad, groups, x, threads)
    samples = alternate(cands, repeats, min_time, sample=best_call)
    OH = (H + 2 * pad - R) // stride + 1
    flops = 2.0 * K * (C // groups) * R * R * OH * OH
    med = {k: flops / statistics.median(s) * 1e-9 for k, s in samples.items()}
    best = {k: flops / min(s) * 1e-9 for k, s in samples.items()}
    return med, best, kernels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, shorter samples")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default=None, help="comma list; default: every supported one but portable")
    ap.add_argument("--layers", default=None, help="comma list of layer-name substrings")
    ap.add_argument("--no-ort", action="store_true", help="leave ONNX Runtime out")
    args = ap.parse_args()

    variants = args.variants.split(",") if args.variants else [v for v in supported_variants() if v != "portable"]
    threads_list = [int(t) for t in args.threads.split(",")]
    repeats, min_time = (3, 0.03) if args.quick else (7, 0.1)
    layers = LAYERS
    if args.layers:
        keys = args.layers.split(",")
        layers = [layer for layer in LAYERS if any(k in layer[0] for k in keys)]
    mach = machine()
    peak1 = mach["fma_peak_gflops_1thread"]
    out = {"benchmark": "f32 NCHWc conv variants vs ONNX Runtime (one-node model)", "machine": mach,
           "unit": "GFLOP/s (gflops: median of repeats; gflops_best: best repeat, the least disturbed)", "results": []}
    for layer in layers:
        for t in threads_list:
            g, gbest, kernels = bench_layer(layer, t, variants, repeats, min_time, not args.no_ort)
            row = {"layer": layer[0], "threads": t, "kernels": kernels, "gflops": {k: round(v, 1) for k, v in g.items()},
                   "gflops_best": {k: round(v, 1) for k, v in gbest.items()}}
            if peak1:
                row["fraction_of_peak"] = {k: round(v / (peak1 * t), 3) for k, v in g.items()}
            if "onnxruntime" in g:
                row["vs_onnxruntime"] = {k: round(v / g["onnxruntime"], 2) for k, v in g.items() if k != "onnxruntime"}
            out["results"].append(row)
            print(f"# {layer[0]:26s} t={t} " + " ".join(f"{k}={v:.1f}/{gbest[k]:.1f}" for k, v in g.items()),
                  file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
