"""`sparseinfer benchmark MODEL`: latency, throughput, CPU utilisation and peak memory of one or
more engines on the same seeded inputs.

``--scenario sync`` (default): one request at a time; several engines alternate in rounds
(in this process, except DeepSparse, which always runs in its own). ``--scenario async``:
``--num-streams`` threads submit requests concurrently, the cores split between them; engines
are measured one after the other, each in its own process when there are several."""

from __future__ import annotations

import argparse
import json
import os
import sys

from sparseinfer.benchmark.inputs import feeds_for, load_model, parse_shapes  # noqa: F401 - re-export
from sparseinfer.benchmark.measure import BenchmarkResult, Progress, measure_sync
from sparseinfer.benchmark.runners import ALIASES, DEEPSPARSE_PYTHON_ENV, PEERS, expand_engines, split_installed
from sparseinfer.benchmark.worker import open_engine

EXIT_SKIPPED = 3  # some requested engines are not installed (the others ran and were reported)


def add_common_arguments(p: argparse.ArgumentParser, engines_default: str = "sparseinfer,onnxruntime") -> None:
    """Arguments shared by benchmark, compare and scenario."""
    p.add_argument("model", help="an .onnx path or a zoo stub such as zoo:resnet50-pruned90")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-cores", type=int, default=None, help="default: all physical cores")
    p.add_argument("--engines", "--engine", dest="engines", default=engines_default,
                   help=f"comma-separated engines; available: {', '.join([*PEERS, *ALIASES])} "
                        f"(openvino = openvino-f32 + openvino-default)")
    p.add_argument("--time", type=float, default=10.0, help="timed seconds per engine")
    p.add_argument("--warmup-time", type=float, default=2.0)
    p.add_argument("--input-shapes", default=None,
                   help="e.g. 1x3x224x224 or input_ids:1x128,attention_mask:1x128 (text models: the sequence "
                        "length); the first dimension is the batch, --batch-size sets it")
    p.add_argument("--export-json", default=None, help="write the results to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_deepsparse_argument(p)


def add_deepsparse_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deepsparse-python", default=None, metavar="PATH",
                   help=f"Python of a virtual environment with deepsparse==1.8.0, which runs the deepsparse "
                        f"engine in its own process (default: ${DEEPSPARSE_PYTHON_ENV})")


def apply_deepsparse_argument(args: argparse.Namespace) -> None:
    """--deepsparse-python PATH is the same as SPARSEINFER_DEEPSPARSE_PYTHON=PATH, for this
    command and every process it starts."""
    if args.deepsparse_python:
        os.environ[DEEPSPARSE_PYTHON_ENV] = args.deepsparse_python


def configure(p: argparse.ArgumentParser):
    """Adds the ``benchmark`` arguments to ``p`` and returns the handler (see sparseinfer.cli)."""
    add_common_arguments(p)
    p.add_argument("--scenario", choices=["sync", "async"], default="sync")
    p.add_argument("--num-streams", type=int, default=None,
                   help="async: concurrent streams, cores split between them (default: number of cores)")
    p.add_argument("--rounds", type=int, default=6, help="sync: alternating rounds the timed seconds are split into")
    return run


def hardware_summary(num_cores: int) -> dict:
    import os
    import platform

    from sparseinfer import _core

    return {"isa": _core.active_isa(), "num_cores": num_cores, "physical_cores": _core.physical_core_count(),
            "logical_cpus": os.cpu_count(), "machine": platform.machine(), "cpu": cpu_model_name(),
            "python": platform.python_version()}


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def check_positive(**values: int | float | None) -> None:
    for name, v in values.items():
        if v is not None and v <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {v}")


def print_table(results: list[BenchmarkResult], file=None) -> None:
    """The results as an aligned text table (ms, items/s, CPU % of one core, MiB)."""
    file = file or sys.stdout
    head = (f"{'engine':<18}{'scenario':>9}{'streams':>8}{'mean ms':>10}{'median':>9}{'std':>8}{'p90':>9}"
            f"{'p99':>9}{'items/s':>11}{'CPU %':>8}{'peak MiB':>10}{'iters':>8}")
    print(head, file=file)
    for r in results:
        print(f"{r.engine:<18}{r.scenario:>9}{r.num_streams:>8}{r.mean_ms:>10.3f}{r.median_ms:>9.3f}{r.std_ms:>8.3f}"
              f"{r.p90_ms:>9.3f}{r.p99_ms:>9.3f}{r.items_per_s:>11.1f}{r.cpu_percent:>8.1f}{r.peak_rss_mib:>10.1f}"
              f"{r.iterations:>8}", file=file)


def run(args: argparse.Namespace) -> int:
    engines = expand_engines(args.engines)
    check_positive(batch_size=args.batch_size, num_cores=args.num_cores, num_streams=args.num_streams,
                   time=args.time, rounds=args.rounds)
    if args.warmup_time < 0:
        raise ValueError(f"--warmup-time must be >= 0, got {args.warmup_time}")
    apply_deepsparse_argument(args)
    model, path = load_model(args.model)
    from sparseinfer import _core

    cores = args.num_cores or _core.physical_core_count()
    feeds = feeds_for(model, args.batch_size, args.input_shapes)
    engines, skipped = split_installed(engines)
    for msg in skipped:
        print(msg, file=sys.stderr)
    if not engines:
        raise ImportError("none of the requested engines is installed")
    streams = args.num_streams or (cores if args.scenario == "async" else 1)
    print(f"benchmarking {args.model} batch {args.batch_size} on {cores} cores ({_core.active_isa()}), "
          f"{args.scenario}{f' {streams} streams' if args.scenario == 'async' else ''}: {', '.join(engines)}; "
          f"{args.warmup_time}s warm-up, {args.time}s timed per engine", file=sys.stderr)
    try:
        results = _measure(args, engines, model, path, feeds, cores, streams)
    except RuntimeError as exc:  # an engine failed to build or run: its message, no traceback
        raise ValueError(str(exc)) from None
    print_table(results)
    if len(results) > 1:
        ref = results[-1]
        print("throughput vs " + ref.engine + ": " + ", ".join(
            f"{r.engine} {r.items_per_s / ref.items_per_s:.2f}x" for r in results))
    print("CPU % is of one core (max 100 x cores); peak MiB is the peak resident set of the process that ran "
          "the engine" + (" (each engine in its own process)" if len(results) > 1 else ""), file=sys.stderr)
    if args.export_json:
        with open(args.export_json, "w") as f:
            json.dump({"model": args.model, "batch_size": args.batch_size, "num_cores": cores,
                       "scenario": args.scenario, "num_streams": streams, "isa": _core.active_isa(),
                       "reference_engine": results[0].engine, "hardware": hardware_summary(cores),
                       "skipped": skipped, "results": {r.engine: r.as_dict() for r in results}}, f, indent=2)
    return EXIT_SKIPPED if skipped else 0


def _measure(args: argparse.Namespace, engines: list[str], model, path: str, feeds: dict, cores: int,
             streams: int) -> list[BenchmarkResult]:
    handles: dict = {}
    try:
        if args.scenario == "sync":
            for e in engines:  # several: each in its own process (an engine's spinning threads
                # would otherwise take cores from the next one; ONNX Runtime's halved our speed)
                handles[e] = open_engine(e, model, path, feeds, args.batch_size, cores, 1, args.model,
                                         isolate=len(engines) > 1)
            bar = Progress(len(engines) * (args.warmup_time + args.time), "benchmark", not args.no_progress)
            try:
                stats = measure_sync(handles, args.batch_size, cores, warmup_s=args.warmup_time,
                                     time_s=args.time * len(engines), rounds=args.rounds, progress=bar)
            finally:
                bar.close()
            return [stats[e] for e in engines]
        results = []
        for e in engines:  # several engines: each in its own process, so their thread pools never meet
            handles[e] = open_engine(e, model, path, feeds, args.batch_size, cores, streams, args.model,
                                     isolate=len(engines) > 1)
            bar = Progress(args.warmup_time + args.time, e, not args.no_progress)
            try:
                results.append(handles[e].run_async(args.warmup_time, args.time, progress=bar))
            finally:
                bar.close()
            handles.pop(e).close()
        return results
    finally:
        for h in handles.values():
            h.close()
