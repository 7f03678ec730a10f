"""`sparseinfer compare MODEL --engines a,b,c`: every engine in its own process on the same
seeded inputs, run one at a time in alternating rounds (so drift shows in the per-round
medians), outputs checked against a reference engine, results as Markdown, CSV, JSON and PNG.

Output difference: ``max_abs_diff`` = max |out - ref| over all outputs; ``max_rel_diff`` =
``max_abs_diff`` / max |ref| (relative to the reference's magnitude, robust to zeros)."""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from sparseinfer.benchmark.command import (EXIT_SKIPPED, add_common_arguments, apply_deepsparse_argument,
                                           check_positive, hardware_summary)
from sparseinfer.benchmark.inputs import feeds_for, load_model
from sparseinfer.benchmark.measure import Progress, measure_sync
from sparseinfer.benchmark.report import markdown_table, write_reports
from sparseinfer.benchmark.runners import expand_engines, split_installed
from sparseinfer.benchmark.worker import Worker, open_engine


def configure(p: argparse.ArgumentParser):
    """Adds the ``compare`` arguments; returns the handler."""
    add_common_arguments(p, engines_default="sparseinfer,onnxruntime")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--reference", default=None, help="engine whose outputs the others are checked against "
                   "(default: onnxruntime if compared, else the first engine)")
    p.add_argument("--output-dir", default="sparseinfer-compare", help="where compare.{md,csv,json,png} go")
    p.add_argument("--name", default="compare", help="file stem of the reports")
    return run


def output_diff(outs: list[np.ndarray], ref: list[np.ndarray]) -> tuple[float, float]:
    """(max abs difference, max abs difference / max |ref|) over all outputs."""
    if len(outs) != len(ref):
        raise RuntimeError(f"{len(outs)} outputs vs {len(ref)} in the reference")
    abs_d, scale = 0.0, 0.0
    for o, r in zip(outs, ref):
        o = np.asarray(o, dtype=np.float64).reshape(np.shape(r))
        r = np.asarray(r, dtype=np.float64)
        if r.size:
            abs_d = max(abs_d, float(np.max(np.abs(o - r))))
            scale = max(scale, float(np.max(np.abs(r))))
    return abs_d, (abs_d / scale if scale > 0 else abs_d)


def compare(model_arg: str, engines: list[str], batch_size: int = 1, num_cores: int | None = None,
            time_s: float = 10.0, warmup_s: float = 2.0, rounds: int = 6, input_shapes: str | None = None,
            reference: str | None = None, progress: bool = True) -> dict:
    """Runs the comparison; returns the report document (``rows``: one dict per engine)."""
    from sparseinfer import _core

    model, path = load_model(model_arg)
    feeds = feeds_for(model, batch_size, input_shapes)
    cores = num_cores or _core.physical_core_count()
    ref = reference or ("onnxruntime" if "onnxruntime" in engines else engines[0])
    if ref not in engines:
        raise ValueError(f"--reference {ref!r} is not among the compared engines {engines}")
    workers: dict[str, Worker] = {}
    bar = Progress(len(engines) * (warmup_s + time_s), "compare", progress)
    try:
        for e in engines:  # one at a time: builds do not compete for the cores
            bar.set_description(f"building {e}")
            workers[e] = open_engine(e, model, path, feeds, batch_size, cores, 1, model_arg, isolate=True)
        del model
        outputs = {e: w.outputs() for e, w in workers.items()}
        results = measure_sync(workers, batch_size, cores, warmup_s, time_s * len(engines), rounds, progress=bar)
    finally:
        bar.close()
        for w in workers.values():
            w.close()
    rows = []
    for e in engines:
        row = results[e].as_dict()
        row["speedup"] = results[e].items_per_s / results[ref].items_per_s
        row["max_abs_diff"], row["max_rel_diff"] = output_diff(outputs[e], outputs[ref])
        row["build_s"] = workers[e].ready["build_s"] if workers[e].ready else None
        row["version"] = workers[e].ready.get("version") if workers[e].ready else None
        rows.append(row)
    hw = hardware_summary(cores)
    title = (f"{model_arg}, batch {batch_size}, {cores} cores ({hw['cpu']}, {hw['isa']}), sync, "
             f"{rounds} alternating rounds; reference {ref}")
    return {"title": title, "model": model_arg, "batch_size": batch_size, "num_cores": cores,
            "reference_engine": ref, "rounds": rounds, "time_s": time_s, "warmup_s": warmup_s,
            "hardware": hw, "rows": rows}


def run(args: argparse.Namespace) -> int:
    check_positive(batch_size=args.batch_size, num_cores=args.num_cores, time=args.time, rounds=args.rounds)
    apply_deepsparse_argument(args)
    engines = expand_engines(args.engines)
    engines, skipped = split_installed(engines)
    for msg in skipped:
        print(msg, file=sys.stderr)
    if not engines:
        raise ImportError("none of the requested engines is installed")
    load_model(args.model)  # a bad path/stub fails before anything starts
    try:
        doc = compare(args.model, engines, args.batch_size, args.num_cores, args.time, args.warmup_time,
                      args.rounds, args.input_shapes, args.reference, progress=not args.no_progress)
    except RuntimeError as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
    doc["skipped"] = skipped
    doc["command"] = "sparseinfer compare " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "compare") \
        if sys.argv and sys.argv[0].endswith(("sparseinfer", "__main__.py", "cli.py")) else None
    paths = write_reports(doc, args.output_dir, args.name)
    if args.export_json:
        import json

        with open(args.export_json, "w") as f:
            json.dump(doc, f, indent=2)
    print(f"**{doc['title']}**\n")
    print(markdown_table(doc["rows"]))
    print("\nround medians (ms), to see drift: " + "; ".join(
        f"{r['engine']} " + " ".join(f"{m:.3f}" for m in r["round_medians_ms"]) for r in doc["rows"]))
    if any(r.get("round_cross_core_ns") for r in doc["rows"]):
        print("cross-core round trip before each round (ns; a rise of several times marks the host placing "
              "the cores apart): " + "; ".join(f"{r['engine']} " + " ".join(f"{x:.0f}" for x in r["round_cross_core_ns"])
                                               for r in doc["rows"] if r.get("round_cross_core_ns")))
    print("reports: " + ", ".join(paths.values()))
    return EXIT_SKIPPED if skipped else 0
