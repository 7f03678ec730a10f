"""`sparseinfer analyze MODEL`: per-layer op, shapes, FLOPs, weight sparsity, kernel chosen,
time (CompiledGraph.profile: each op timed alone), share of the total and achieved GFLOP/s
(per image when the batch runs as streams of single images: times and FLOPs alike);
plus the model file's size against its gzip -9 size (how compressible the weights are)."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys


def layer_profile(engine, arrays: list, repeats: int = 5) -> tuple[list[dict], bool]:
    """The per-op profile rows of ``engine``'s plan for ``arrays`` (after one warm run), and whether
    they are per image (a batch run as streams of single images: StreamedBatch.profile) rather
    than for the whole batch."""
    from sparseinfer.compiler.micro_batch import StreamedBatch

    compiled = engine._default
    compiled.run(arrays)
    return compiled.profile(arrays, repeats=repeats), isinstance(compiled, StreamedBatch)


def analyze(model_arg: str, batch_size: int = 1, num_cores: int | None = None, repeats: int = 5,
            input_shapes: str | None = None) -> dict:
    """The per-layer table (``layers``) and the totals, as a dict."""
    import sparseinfer
    from sparseinfer.benchmark.inputs import feeds_for, load_model
    from sparseinfer.graph.flops import analyze_flops, attention_macs
    from sparseinfer.graph.passes.fuse_epilogue import DOMAIN

    model, path = load_model(model_arg)
    feeds = feeds_for(model, batch_size, input_shapes)
    engine = sparseinfer.compile_model(model, batch_size=batch_size, num_cores=num_cores,
                                       input_shapes={k: list(v.shape) for k, v in feeds.items()})
    compiled = engine._default
    arrays = [feeds[n] for n in engine.input_names]
    # A batch run as streams of single images profiles per image: its FLOPs are counted per image too.
    rows, per_image = layer_profile(engine, arrays, repeats)
    images = batch_size if per_image else 1
    flops = {layer.node: layer for layer in analyze_flops(model, {k: list(v.shape) for k, v in feeds.items()}).layers}
    graphs = [compiled.streams[0].graph] + ([compiled.tail.graph] if compiled.tail else []) if per_image \
        else [compiled.graph]
    nodes = {n.name: (n, g) for g in graphs for n in g.nodes}
    total_ms = sum(r["ms"] for r in rows) or 1e-12
    layers = []
    for r in rows:
        node, graph = nodes.get(r["node"], (None, None))
        shapes_in = [list(graph.shapes.get(i, ())) for i in node.inputs if i] if node else []
        shapes_out = [list(graph.shapes.get(o, ())) for o in node.outputs if o] if node else []
        fl = flops.get(r["node"])
        f = 2 * fl.macs / images if fl and fl.macs else None
        if node is not None and node.op == "Attention" and node.domain == DOMAIN:  # not an ONNX node
            f = 2 * attention_macs(node, graph.shapes)
        layers.append({"node": r["node"], "op": r["op"], "input_shapes": shapes_in, "output_shapes": shapes_out,
                       "flops": f, "weight_sparsity": fl.sparsity if fl and fl.weight_numel else None,
                       "kernel": r["kernel"], "native": r["native"], "ms": r["ms"], "share": r["ms"] / total_ms,
                       "gflops_per_s": f / (r["ms"] * 1e6) if f and r["ms"] > 0 else None})
    data = open(path, "rb").read()
    total_flops = sum(x["flops"] or 0 for x in layers)
    return {"model": model_arg, "path": path, "batch_size": batch_size, "num_cores": engine.num_cores,
            "isa": engine.isa, "per": "image" if per_image else "batch", "batching": engine.batching, "layers": layers, "total_ms": total_ms, "total_flops": total_flops,
            "gflops_per_s": total_flops / (total_ms * 1e6), "file_bytes": len(data),
            "gzip9_bytes": len(gzip.compress(data, compresslevel=9))}


def configure(p: argparse.ArgumentParser):
    """Adds the ``analyze`` arguments; returns the handler."""
    p.add_argument("model", help="an .onnx path or a zoo stub such as zoo:resnet50-pruned90")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-cores", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5, help="timings per op (median)")
    p.add_argument("--input-shapes", default=None)
    p.add_argument("--export-json", default=None)
    return run


def _fmt_shapes(shapes: list) -> str:
    return ",".join("x".join(map(str, s)) for s in shapes)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.repeats < 1:
        raise ValueError("--batch-size and --repeats must be >= 1")
    rep = analyze(args.model, args.batch_size, args.num_cores, args.repeats, args.input_shapes)
    print(f"{'#':>3} {'node':<28} {'op':<14} {'in -> out shapes':<34} {'MFLOP':>9} {'sparsity':>8} "
          f"{'kernel':<22} {'ms':>8} {'share':>6} {'GFLOP/s':>8}")
    for i, x in enumerate(rep["layers"]):
        shp = f"{_fmt_shapes(x['input_shapes'][:1])} -> {_fmt_shapes(x['output_shapes'])}"
        print(f"{i:>3} {x['node'][:28]:<28} {x['op'][:14]:<14} {shp[:34]:<34} "
              f"{(x['flops'] or 0) / 1e6 if x['flops'] else float('nan'):>9.3f} "
              f"{x['weight_sparsity'] if x['weight_sparsity'] is not None else float('nan'):>8.1%} "
              f"{x['kernel'][:22]:<22} {x['ms']:>8.4f} {x['share']:>6.1%} "
              f"{x['gflops_per_s'] if x['gflops_per_s'] else float('nan'):>8.2f}")
    print(f"total: {rep['total_ms']:.3f} ms (ops timed alone), {rep['total_flops'] / 1e6:.3f} MFLOP, "
          f"{rep['gflops_per_s']:.2f} GFLOP/s per {rep['per']}; batch {rep['batch_size']} ({rep['batching']}), "
          f"{rep['num_cores']} cores, {rep['isa']}")
    print(f"file: {rep['file_bytes']:,} bytes, gzip -9: {rep['gzip9_bytes']:,} bytes "
          f"({rep['gzip9_bytes'] / rep['file_bytes']:.1%})")
    if args.export_json:
        with open(args.export_json, "w") as f:
            json.dump(rep, f, indent=2)
    return 0
