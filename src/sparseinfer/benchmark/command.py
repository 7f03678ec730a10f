"""`sparseinfer benchmark MODEL`: sync latency/throughput of one or more engines on the same
inputs, in the same run, alternating."""

from __future__ import annotations

import argparse
import json
import sys

from sparseinfer.benchmark.inputs import make_inputs
from sparseinfer.benchmark.runners import RUNNERS, make_runner
from sparseinfer.benchmark.timing import compare_engines


def parse_shapes(text: str | None):
    """'input_ids:1x128,attention_mask:1x128' or '1x3x224x224' -> dict or list of shapes."""
    if not text:
        return None
    parts = [p for p in text.split(",") if p]
    if all(":" in p for p in parts):
        return {k: [int(d) for d in v.split("x")] for k, v in (p.split(":", 1) for p in parts)}
    return [[int(d) for d in p.split("x")] for p in parts]


def configure(p: argparse.ArgumentParser):
    """Adds the ``benchmark`` arguments to ``p`` and returns the handler (see sparseinfer.cli)."""
    p.add_argument("model", help="an .onnx path or a zoo stub such as zoo:resnet50-pruned90")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-cores", type=int, default=None, help="default: all physical cores")
    p.add_argument("--engines", default="sparseinfer,onnxruntime",
                   help=f"comma-separated, first is the one ratios refer to; available: {', '.join(RUNNERS)}")
    p.add_argument("--time", type=float, default=10.0, help="timed seconds, split over engines and rounds")
    p.add_argument("--warmup-time", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--input-shapes", default=None, help="e.g. 1x3x224x224 or input_ids:1x128,attention_mask:1x128")
    p.add_argument("--export-json", default=None, help="write the results to this file")
    return run


def run(args: argparse.Namespace) -> int:
    import onnx

    from sparseinfer import _core
    from sparseinfer.graph.onnx_import import load_model_proto

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in RUNNERS]
    if unknown:
        raise ValueError(f"unknown engine(s) {unknown}; available: {', '.join(RUNNERS)}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    source = args.model
    if source.startswith("zoo:"):
        from sparseinfer import zoo

        source = str(zoo.resolve(source))
    model: onnx.ModelProto = load_model_proto(source)
    cores = args.num_cores or _core.physical_core_count()
    shapes = parse_shapes(args.input_shapes)
    feeds = make_inputs(model, args.batch_size, shapes if isinstance(shapes, dict) else None)
    if isinstance(shapes, list):
        import numpy as np

        feeds = {k: np.resize(v, s).astype(v.dtype) for (k, v), s in zip(feeds.items(), shapes)}
    runners = {e: make_runner(e, model, args.batch_size, cores) for e in engines}
    print(f"benchmarking {args.model} batch {args.batch_size} on {cores} cores ({_core.active_isa()}): "
          f"{', '.join(engines)}; {args.warmup_time}s warm-up each, {args.time}s timed in {args.rounds} "
          f"alternating rounds", file=sys.stderr)
    stats = compare_engines(runners, feeds, args.batch_size, warmup_s=args.warmup_time, time_s=args.time,
                            rounds=args.rounds)
    base = stats[engines[0]]
    print(f"{'engine':<14}{'median ms':>11}{'mean ms':>10}{'p90 ms':>9}{'p99 ms':>9}{'items/s':>11}"
          f"{'speed vs ' + engines[-1]:>18}")
    ref = stats[engines[-1]]
    for e in engines:
        s = stats[e]
        print(f"{e:<14}{s.median_ms:>11.3f}{s.mean_ms:>10.3f}{s.p90_ms:>9.3f}{s.p99_ms:>9.3f}"
              f"{s.items_per_s:>11.1f}{ref.median_ms / s.median_ms:>17.2f}x")
    if args.export_json:
        with open(args.export_json, "w") as f:
            json.dump({"model": args.model, "batch_size": args.batch_size, "num_cores": cores,
                       "isa": _core.active_isa(), "reference_engine": base.engine,
                       "results": {e: s.as_dict() for e, s in stats.items()}}, f, indent=2)
    return 0
