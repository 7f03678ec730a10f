"""The ``sparseinfer`` command line.

Subcommands register themselves with :func:`command`; adding one (benchmark, compare, analyze,
check-hardware, ...) is a function that configures its parser and returns the handler::

    @command("analyze", help="FLOPs and sparsity of a model")
    def _analyze(parser):
        parser.add_argument("model")
        return lambda args: ...  # returns an exit code (or None for 0)

Errors users can fix (bad stubs, missing files, bad arguments) print one line on stderr and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

Handler = Callable[[argparse.Namespace], "int | None"]
Configure = Callable[[argparse.ArgumentParser], Handler]

_COMMANDS: dict[str, tuple[str, Configure]] = {}


def command(name: str, help: str) -> Callable[[Configure], Configure]:  # noqa: A002 - argparse's word
    """Registers a top-level subcommand: ``configure(parser)`` adds arguments, returns the handler."""
    def register(configure: Configure) -> Configure:
        _COMMANDS[name] = (help, configure)
        return configure
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparseinfer", description="Fast CPU inference for sparse models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_, configure) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_handler=configure(p))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparseinfer`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args._handler(args)
    except BrokenPipeError:  # e.g. `sparseinfer zoo list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, ImportError) as exc:
        print(f"sparseinfer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


# ---- zoo ---------------------------------------------------------------------------------------
def _format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _zoo_list(args: argparse.Namespace) -> int:
    from sparseinfer import zoo

    rows = [["NAME", "TASK", "WEIGHTS", "INPUT SHAPE", "INPUTS", "PARAMS"]]
    for e in zoo.list_models():
        first = e.inputs[0]
        shape = "x".join("N" if d == "batch" else "128" if d == "sequence" else str(d) for d in first.shape)
        params = f"{e.parameters / 1e6:.2f}M" if e.parameters else "?"
        rows.append([e.name, e.task, e.weights, shape, ",".join(i.name for i in e.inputs), params])
    print(_format_table(rows))
    print()
    print("variants: " + ", ".join(zoo.variants()))
    print("use as:   zoo:NAME[-VARIANT]   e.g. zoo:resnet50-pruned90 (variant defaults to dense)")
    print("random-weight models are for speed measurement only; no accuracy is claimed for them.")
    return 0


def _zoo_export(args: argparse.Namespace) -> int:
    from sparseinfer import zoo

    model = zoo.export(args.name, cache_dir=args.dir, force=args.force)
    print(model.path)
    print(model.card.summary())
    print(f"  card:       {model.path.parent / 'card.json'}" + ("  (cached)" if model.cache_hit else ""))
    return 0


@command("zoo", help="list and export zoo models (zoo:NAME[-VARIANT])")
def _zoo(parser: argparse.ArgumentParser) -> Handler:
    sub = parser.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
    sub.required = True
    p_list = sub.add_parser("list", help="list the models and variants")
    p_list.set_defaults(_zoo_handler=_zoo_list)
    p_export = sub.add_parser("export", help="export a model to ONNX (cached) and print its card")
    p_export.add_argument("name", help="NAME[-VARIANT] or zoo:NAME[-VARIANT], e.g. resnet50-pruned90")
    p_export.add_argument("--dir", default=None,
                          help="cache directory (default: $SPARSEINFER_ZOO_DIR or ~/.cache/sparseinfer/zoo)")
    p_export.add_argument("--force", action="store_true", help="regenerate even if cached")
    p_export.set_defaults(_zoo_handler=_zoo_export)
    return lambda args: args._zoo_handler(args)


@command("benchmark", help="latency, items/s, CPU % and peak memory of engines on a model (sync or async)")
def _benchmark(parser: argparse.ArgumentParser) -> Handler:
    from sparseinfer.benchmark.command import configure

    return configure(parser)


@command("sparsify", help="apply a pruning recipe to a zoo model (one-shot) or the digits CNN, export to ONNX")
def _sparsify(parser: argparse.ArgumentParser) -> Handler:
    from sparseinfer.sparsify.command import configure

    return configure(parser)


@command("compare", help="engines in their own processes, alternating rounds, outputs checked; MD/CSV/JSON/PNG")
def _compare(parser: argparse.ArgumentParser) -> Handler:
    from sparseinfer.benchmark.compare import configure

    return configure(parser)


@command("analyze", help="per-layer op, shapes, FLOPs, sparsity, kernel, time, GFLOP/s; file vs gzip size")
def _analyze(parser: argparse.ArgumentParser) -> Handler:
    from sparseinfer.benchmark.analyze import configure

    return configure(parser)


@command("check-hardware", help="CPU features, cores, caches and the kernels that will be used")
def _check_hardware(parser: argparse.ArgumentParser) -> Handler:
    from sparseinfer.benchmark.hardware import configure

    return configure(parser)


@command("scenario", help="study workloads: single-stream, large-batch, multi-instance, latency-bound, thread-sweep")
def _scenario(parser: argparse.ArgumentParser) -> Handler:
    from sparseinfer.benchmark.scenarios import configure

    return configure(parser)


if __name__ == "__main__":
    sys.exit(main())
