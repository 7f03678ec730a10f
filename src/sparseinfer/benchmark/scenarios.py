"""The workloads of the published CPU-inference performance study, as named scenarios:

* ``single-stream``: sync latency at batch 1.
* ``large-batch``: sync throughput at batch 1, 8, 64, 256, ... up to ``--max-batch`` (<= 1024).
* ``multi-instance``: 1..N processes running at once, the cores split between them; total items/s.
* ``latency-bound``: the largest batch x stream count whose mean and p90 latency stay under
  ``--latency-bound-ms`` (streams 1..cores, batch doubling); the best throughput found.
* ``thread-sweep``: sync latency/throughput at 1..cores threads.
* ``accuracy``: top-1/top-5 on a labeled dataset (``--dataset data.npz`` with arrays ``x``
  (N, ...) in the model's input layout and integer labels ``y`` (N,)).

Each engine is measured on the same seeded inputs; results print as a table and go to JSON,
with a PNG chart next to it (:func:`sparseinfer.benchmark.report.scenario_chart`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from sparseinfer.benchmark.command import (EXIT_SKIPPED, add_deepsparse_argument, apply_deepsparse_argument,
                                           check_positive, hardware_summary, print_table)
from sparseinfer.benchmark.inputs import feeds_for, load_model
from sparseinfer.benchmark.measure import BenchmarkResult, Slice, measure_sync, split_cores, summarize
from sparseinfer.benchmark.report import scenario_chart
from sparseinfer.benchmark.runners import ALIASES, PEERS, expand_engines, split_installed
from sparseinfer.benchmark.worker import Worker, open_engine

SCENARIOS = ("single-stream", "large-batch", "multi-instance", "latency-bound", "thread-sweep", "accuracy")


def configure(p: argparse.ArgumentParser):
    """Adds the ``scenario`` arguments; returns the handler."""
    p.add_argument("name", choices=SCENARIOS, help="the workload")
    p.add_argument("model", help="an .onnx path or a zoo stub such as zoo:resnet50-pruned90")
    p.add_argument("--engines", "--engine", dest="engines", default="sparseinfer,onnxruntime",
                   help=f"comma-separated; available: {', '.join([*PEERS, *ALIASES])}")
    p.add_argument("--num-cores", type=int, default=None, help="default: all physical cores")
    p.add_argument("--batch-size", type=int, default=1, help="multi-instance / thread-sweep batch")
    p.add_argument("--max-batch", type=int, default=256, help="large-batch / latency-bound: largest batch (<= 1024)")
    p.add_argument("--max-instances", type=int, default=None, help="multi-instance: up to this many (default: cores)")
    p.add_argument("--latency-bound-ms", type=float, default=None, help="latency-bound: the bound on mean and p90")
    p.add_argument("--time", type=float, default=3.0, help="timed seconds per point")
    p.add_argument("--warmup-time", type=float, default=0.5)
    p.add_argument("--input-shapes", default=None)
    p.add_argument("--dataset", default=None, help="accuracy: .npz with x (inputs) and y (integer labels)")
    p.add_argument("--export-json", default=None, help="write the results to this file (and the chart next to it)")
    p.add_argument("--chart", default=None, help="PNG chart of the results (default: --export-json with .png)")
    add_deepsparse_argument(p)
    return run


def accuracy(engine: str, model, path: str, source: str, dataset: str, batch: int, cores: int) -> dict:
    """Top-1/top-5 of the first output's scores against the labels (last batch zero-padded)."""
    import numpy as np

    try:
        with np.load(dataset) as z:
            x, y = z["x"], z["y"]
    except KeyError:
        raise ValueError(f"--dataset {dataset}: expected arrays 'x' (inputs) and 'y' (labels)") from None
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"--dataset {dataset}: x has {len(x)} rows and y {len(y)}; expected the same, > 0")
    feeds = feeds_for(model, batch)
    if len(feeds) != 1:
        raise ValueError("the accuracy scenario supports single-input models")
    name = next(iter(feeds))
    top1 = top5 = 0
    with _opened(engine, model, path, feeds, batch, cores, 1, source) as run:
        for i in range(0, len(x), batch):
            chunk = x[i:i + batch]
            pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)
            scores = np.asarray(run({name: np.concatenate([chunk, pad]) if len(pad) else chunk})[0])[:len(chunk)]
            scores = scores.reshape(len(chunk), -1)
            labels = y[i:i + batch].astype(np.int64)
            order = np.argsort(-scores, axis=1)
            top1 += int(np.sum(order[:, 0] == labels))
            top5 += int(np.sum(np.any(order[:, :5] == labels[:, None], axis=1)))
    return {"engine": engine, "samples": int(len(y)), "top1": top1 / len(y), "top5": top5 / len(y)}


@contextlib.contextmanager
def _opened(engine: str, model, path: str, feeds: dict, batch: int, cores: int, streams: int, source: str):
    h = open_engine(engine, model, path, feeds, batch, cores, streams, source)
    try:
        yield h
    finally:
        h.close()


def _sync(engine: str, model, path: str, source: str, batch: int, cores: int, args,
          shapes: str | None) -> BenchmarkResult:
    with _opened(engine, model, path, feeds_for(model, batch, shapes), batch, cores, 1, source) as h:
        return measure_sync({engine: h}, batch, cores, args.warmup_time, args.time, rounds=1)[engine]


def _batches(max_batch: int) -> list[int]:
    out, b = [1], 8
    while b <= max_batch:
        out.append(b)
        b *= 8 if b < 64 else 4
    if out[-1] != max_batch:
        out.append(max_batch)
    return out


def multi_instance(engine: str, path: str, source: str, feeds: dict, batch: int, cores: int, instances: int,
                   time_s: float, warmup_s: float) -> dict:
    """``instances`` processes, cores split, started together; total items/s over all of them."""
    per = split_cores(cores, instances)
    workers: list[Worker] = []
    try:
        for c in per:
            workers.append(Worker(engine, path, feeds, batch, c, 1, source))
        for w in workers:
            w.wait_ready()
        for w in workers:
            w.send(cmd="slice", seconds=warmup_s)
        for w in workers:
            w.receive()
        start = time.time() + 0.3
        for w in workers:
            w.send(cmd="slice", seconds=time_s, start_at=start)
        slices = [Slice(**w.receive()) for w in workers]
    finally:
        for w in workers:
            w.close()
    lat = [x for s in slices for x in s.latencies_s]
    r = summarize(engine, "sync", batch, 1, cores, lat, max(s.wall_s for s in slices), sum(s.cpu_s for s in slices))
    d = r.as_dict()
    d.update(instances=instances, cores_per_instance=per,
             items_per_s=sum(len(s.latencies_s) * batch / s.wall_s for s in slices),
             cpu_percent=sum(100 * s.cpu_s / s.wall_s for s in slices),
             peak_rss_mib=sum(s.peak_rss_mib for s in slices))
    return d


def latency_bound(engine: str, model, path: str, source: str, cores: int, bound_ms: float, max_batch: int,
                  time_s: float, warmup_s: float, shapes: str | None) -> dict:
    """Searches streams 1..cores and batch 1, 2, 4, ... for the best items/s with mean and p90
    under ``bound_ms``. Raises ValueError when even batch 1, one stream misses the bound."""
    tried, best = [], None
    for streams in range(1, cores + 1):
        batch = 1
        while batch <= max_batch:
            with _opened(engine, model, path, feeds_for(model, batch, shapes), batch, cores, streams, source) as h:
                if streams == 1:
                    r = measure_sync({engine: h}, batch, cores, warmup_s, time_s, rounds=1)[engine]
                else:
                    r = h.run_async(warmup_s, time_s)
            ok = r.mean_ms <= bound_ms and r.p90_ms <= bound_ms
            tried.append({"streams": streams, "batch_size": batch, "mean_ms": r.mean_ms, "p90_ms": r.p90_ms,
                          "items_per_s": r.items_per_s, "within_bound": ok})
            print(f"  {engine}: {streams} stream(s) batch {batch}: mean {r.mean_ms:.3f} ms, p90 {r.p90_ms:.3f} ms, "
                  f"{r.items_per_s:.1f} items/s {'ok' if ok else 'over the bound'}", file=sys.stderr)
            if not ok:
                break
            if best is None or r.items_per_s > best["items_per_s"]:
                best = tried[-1]
            batch *= 2
        if streams == 1 and best is None:
            first = tried[0]
            raise ValueError(f"impossible latency bound: {engine} at batch 1, one stream has mean "
                             f"{first['mean_ms']:.3f} ms / p90 {first['p90_ms']:.3f} ms > "
                             f"--latency-bound-ms {bound_ms}; expected a bound above that")
    return {"engine": engine, "latency_bound_ms": bound_ms, "best": best, "tried": tried}


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except RuntimeError as exc:  # an engine failed to build or run, or completed nothing: no traceback
        raise ValueError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    check_positive(num_cores=args.num_cores, batch_size=args.batch_size, max_batch=args.max_batch,
                   time=args.time, max_instances=args.max_instances, latency_bound_ms=args.latency_bound_ms)
    if args.max_batch > 1024:
        raise ValueError(f"--max-batch must be <= 1024, got {args.max_batch}")
    if args.name == "latency-bound" and args.latency_bound_ms is None:
        raise ValueError("the latency-bound scenario needs --latency-bound-ms (e.g. --latency-bound-ms 10)")
    apply_deepsparse_argument(args)
    engines, skipped = split_installed(expand_engines(args.engines))
    for msg in skipped:
        print(msg, file=sys.stderr)
    if not engines:
        raise ImportError("none of the requested engines is installed")
    model, path = load_model(args.model)
    from sparseinfer import _core

    cores = args.num_cores or _core.physical_core_count()
    doc: dict = {"scenario": args.name, "model": args.model, "num_cores": cores, "hardware": hardware_summary(cores),
                 "skipped": skipped, "points": []}
    if args.name == "single-stream":
        res = [_sync(e, model, path, args.model, 1, cores, args, args.input_shapes) for e in engines]
        print_table(res)
        doc["points"] = [r.as_dict() for r in res]
    elif args.name in ("large-batch", "thread-sweep"):
        print(f"{'engine':<18}{'batch':>7}{'threads':>8}{'mean ms':>11}{'p90 ms':>10}{'items/s':>12}{'CPU %':>8}")
        for e in engines:
            for x in (_batches(args.max_batch) if args.name == "large-batch" else range(1, cores + 1)):
                batch, threads = (x, cores) if args.name == "large-batch" else (args.batch_size, x)
                r = _sync(e, model, path, args.model, batch, threads, args, args.input_shapes)
                print(f"{e:<18}{batch:>7}{threads:>8}{r.mean_ms:>11.3f}{r.p90_ms:>10.3f}{r.items_per_s:>12.1f}"
                      f"{r.cpu_percent:>8.1f}", flush=True)
                doc["points"].append(dict(r.as_dict(), threads=threads))
    elif args.name == "multi-instance":
        print(f"{'engine':<18}{'instances':>10}{'cores each':>12}{'total items/s':>15}{'mean ms':>10}{'CPU %':>8}")
        for e in engines:
            for k in range(1, (args.max_instances or cores) + 1):
                d = multi_instance(e, path, args.model, feeds_for(model, args.batch_size, args.input_shapes),
                                   args.batch_size, cores, k, args.time, args.warmup_time)
                print(f"{e:<18}{k:>10}{'/'.join(map(str, d['cores_per_instance'])):>12}{d['items_per_s']:>15.1f}"
                      f"{d['mean_ms']:>10.3f}{d['cpu_percent']:>8.1f}", flush=True)
                doc["points"].append(d)
    elif args.name == "accuracy":
        if not args.dataset:
            raise ValueError("the accuracy scenario needs --dataset data.npz (arrays x and y)")
        for e in engines:
            d = accuracy(e, model, path, args.model, args.dataset, args.batch_size, cores)
            print(f"{e}: top-1 {d['top1']:.2%}, top-5 {d['top5']:.2%} on {d['samples']} samples")
            doc["points"].append(d)
    else:
        for e in engines:
            d = latency_bound(e, model, path, args.model, cores, args.latency_bound_ms, args.max_batch, args.time,
                              args.warmup_time, args.input_shapes)
            b = d["best"]
            print(f"{e}: best under {args.latency_bound_ms} ms: {b['streams']} stream(s) x batch {b['batch_size']}: "
                  f"{b['items_per_s']:.1f} items/s (mean {b['mean_ms']:.3f} ms, p90 {b['p90_ms']:.3f} ms)")
            doc["points"].append(d)
    chart = args.chart or (str(Path(args.export_json).with_suffix(".png")) if args.export_json else None)
    if chart:
        scenario_chart(doc, chart)
        doc["chart"] = chart
        print(f"chart: {chart}")
    if args.export_json:
        with open(args.export_json, "w") as f:
            json.dump(doc, f, indent=2)
    return EXIT_SKIPPED if skipped else 0


