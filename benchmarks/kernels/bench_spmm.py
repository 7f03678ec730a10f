"""Speed of every f32 spmm variant (and, on AVX-512, the generated code, packed and in place) vs the dense
sgemm_packed on the same problem, same run.

Problem: out[M, Q] = W[M, K] @ In[K, Q] with W pruned to a given (unstructured) sparsity.
Dense: _core.sgemm_packed(W, PackedB(In)) with In packed once outside the timing (favours
dense). Sparse: _core.spmm(SparseWeights(W), In). Both write into a preallocated `out`.
The 3x3 shapes are convolutions as the conv ops run them: In is then the zero-padded input
planes (C x images x (H+2) x (W+2)), the spmm reads each output pixel's taps through its column
offsets and an input map (exactly the H x W output pixels per image, no junk columns), and the
dense candidate multiplies the same taps gathered into an [9C, Q] matrix (im2col, outside the
timing).
Prints JSON: per shape, sparsity and thread count, the median seconds of each candidate
(candidates alternate within each repeat, after warm-up), effective GFLOP/s on the nonzero
FLOPs (2 * nnz * Q) and the median speedup over dense. Never asserts on time.

    python benchmarks/kernels/bench_spmm.py [--quick] [--threads 1,2] [--sparsities 0.8,0.9,0.95]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

from harness import _core, alternate, machine  # noqa: E402

# (name, M, K, Q): ResNet-50 1x1 convs at batch 1 (Q = H*W) and batch 64 at 7x7, BERT-base
# linear layers at sequence 128 (Q = tokens); the 3x3 convs (stride 1, padding 1) as (name, M,
# C, H=W, images): ResNet-50's on 4 images at a time where the engine runs its last two stages
# so at batch 64 (CNHW), VGG-16's on one image (it streams single images).
CONV3X3_SHAPES = [
    ("resnet50.layer1_3x3", 64, 64, 56, 1),
    ("resnet50.layer3_3x3_4images", 256, 256, 14, 4),
    ("resnet50.layer4_3x3_4images", 512, 512, 7, 4),
    ("vgg16.conv1_2_3x3", 64, 64, 224, 1),
    ("vgg16.conv3_2_3x3", 256, 256, 56, 1),
    ("vgg16.conv4_2_3x3", 512, 512, 28, 1),
]
SHAPES = [
    ("resnet50.conv2_1x1_reduce", 64, 256, 3136),
    ("resnet50.conv2_1x1_expand", 256, 64, 3136),
    ("resnet50.conv3_1x1_reduce", 128, 512, 784),
    ("resnet50.conv3_1x1_expand", 512, 128, 784),
    ("resnet50.conv4_1x1_reduce", 256, 1024, 196),
    ("resnet50.conv5_1x1_expand", 2048, 512, 49),
    ("resnet50.conv5_1x1_expand_b64", 2048, 512, 3136),
    ("bert_base.attn_out", 768, 768, 128),
    ("bert_base.ffn_up", 3072, 768, 128),
    ("bert_base.ffn_down", 768, 3072, 128),
]


def supported_variants() -> list[str]:
    order = ["portable", "avx2", "avx512"]
    best = order.index(_core.best_isa())
    return [v for v in _core.spmm_variants() if order.index(v) <= best]




def conv3x3_problem(rng, C: int, H: int, images: int):
    """The spmm form of a 3x3 stride-1 conv over zero-padded planes: (input planes, column
    offsets, Q, map, the same taps as an [9C, Q] matrix)."""
    Hp = Wp = H + 2
    planes = np.zeros((C, images, Hp, Wp), dtype=np.float32)
    planes[:, :, 1:-1, 1:-1] = rng.standard_normal((C, images, H, H), dtype=np.float32)
    offsets = np.array([c * images * Hp * Wp + r * Wp + s for c in range(C) for r in range(3) for s in range(3)],
                       dtype=np.int64)
    q = np.arange(images * H * H)
    source = (q // (H * H)) * Hp * Wp + (q % (H * H)) // H * Wp + q % H
    return planes.ravel(), offsets, len(q), (H, Wp, H * H, Hp * Wp), planes.ravel()[offsets[:, None] + source]


def bench(M, K, Q, sparsity, threads, variants, repeats, min_time, conv=None):
    """conv: (C, H, images) of a 3x3 conv (K = 9C, Q = images x H x H), else a plain [K, Q] input."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((M, K), dtype=np.float32)
    w[rng.random((M, K)) < sparsity] = 0
    if conv:
        x, offsets, Q, input_map, cols = conv3x3_problem(rng, *conv)
    else:
        x = cols = rng.standard_normal((K, Q), dtype=np.float32)
        offsets, input_map = None, None
    kw = {"num_threads": threads, "map": input_map} if conv else {"num_threads": threads}
    out = np.empty((M, Q), dtype=np.float32)
    dense_isa = _core.best_isa()
    pb = _core.PackedB(cols, False, dense_isa)
    cands = {f"dense_{dense_isa}": lambda: _core.sgemm_packed(w, pb, num_threads=threads, out=out)}
    for v in variants:
        sw = _core.SparseWeights(w, offsets, v)
        cands[f"spmm_{v}"] = (lambda sw=sw: _core.spmm(sw, x, Q, out=out, **kw))
        if v == "avx512":  # the code generated for these weights (made in the warm-up, then reused),
            # reading packed copies of the input, and reading it in place (the conv ops pick one)
            cands["spmm_avx512_generated"] = (
                lambda sw=sw: _core.spmm(sw, x, Q, out=out, generated=True, **kw))
            cands["spmm_avx512_generated_in_place"] = (
                lambda sw=sw: _core.spmm(sw, x, Q, out=out, generated=True, in_place=True, **kw))
    samples = alternate(cands, repeats, min_time)
    nnz = int((w != 0).sum())
    dense_key = f"dense_{dense_isa}"
    med = {k: statistics.median(s) for k, s in samples.items()}
    # per-repeat ratios (same repeat: same machine noise), then their median
    speedup = {k: statistics.median(d / s for d, s in zip(samples[dense_key], samples[k]))
               for k in cands if k != dense_key}
    return {
        "nnz": nnz,
        "ms": {k: round(v * 1e3, 4) for k, v in med.items()},
        "gflops_effective": {k: round(2.0 * nnz * Q / v * 1e-9, 1) for k, v in med.items()},
        "gflops_dense_equiv": {k: round(2.0 * M * K * Q / v * 1e-9, 1) for k, v in med.items()},
        "speedup_vs_dense": {k: round(v, 2) for k, v in speedup.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, shorter samples")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--sparsities", default="0.8,0.9,0.95")
    ap.add_argument("--variants", default=None, help="comma list; default: all supported but portable")
    ap.add_argument("--shapes", default=None, help="comma list of shape-name substrings")
    args = ap.parse_args()

    variants = (args.variants.split(",") if args.variants
                else [v for v in supported_variants() if v != "portable"] or ["portable"])
    threads_list = [int(t) for t in args.threads.split(",")]
    sparsities = [float(s) for s in args.sparsities.split(",")]
    repeats, min_time = (3, 0.05) if args.quick else (7, 0.15)
    shapes = [(name, M, K, Q, None) for name, M, K, Q in SHAPES]
    shapes += [(name, M, 9 * C, images * H * H, (C, H, images)) for name, M, C, H, images in CONV3X3_SHAPES]
    if args.shapes:
        keys = args.shapes.split(",")
        shapes = [s for s in shapes if any(k in s[0] for k in keys)]

    out = {
        "benchmark": "f32 spmm (sparse W x dense In) vs dense sgemm_packed",
        "machine": machine(),
        "unit": "ms: median; gflops_effective: nonzero FLOPs (2*nnz*Q) / median time; "
                "speedup_vs_dense: median over repeats of dense time / spmm time",
        "results": [],
    }
    for name, M, K, Q, conv in shapes:
        for sp in sparsities:
            for t in threads_list:
                r = bench(M, K, Q, sp, t, variants, repeats, min_time, conv)
                row = {"shape": name, "M": M, "K": K, "Q": Q, "sparsity": sp, "threads": t, **r}
                out["results"].append(row)
                print(f"# {name:30s} sp={sp:.2f} t={t} "
                      + " ".join(f"{k}={v:.3f}ms" for k, v in r["ms"].items())
                      + " speedup " + " ".join(f"{k}={v:.2f}x" for k, v in r["speedup_vs_dense"].items()),
                      file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
