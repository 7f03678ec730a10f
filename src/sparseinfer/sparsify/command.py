"""``sparseinfer sparsify``: apply a recipe to a zoo model (one-shot) or to the digits CNN
(full gradual pruning with training), export to ONNX and check the export in the engine.

Zoo models have no training data here, so the recipe is applied one-shot: every pruning
modifier at its final sparsity, no fine-tuning; the command says so. ``digits`` trains the
dense CNN on scikit-learn's digits and then runs the recipe's full schedule.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Callable

DIGITS = "digits"


def configure(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Adds the arguments of ``sparseinfer sparsify``; returns its handler."""
    parser.add_argument("model", help="zoo:NAME (dense zoo model, one-shot) or 'digits' (trains the digits CNN)")
    parser.add_argument("--recipe", required=True,
                        help="recipe file or builtin name: " + ", ".join(
                            sorted(p.stem for p in (Path(__file__).parent / "recipes").glob("*.yaml"))))
    parser.add_argument("--out", required=True, help="output directory (model.onnx, report.json)")
    parser.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                        help="override a recipe variable, e.g. --set final_sparsity=0.95 (repeatable)")
    parser.add_argument("--no-check", action="store_true", help="skip the engine-vs-PyTorch check")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch and engine threads (default 1)")
    return run


def _overrides(pairs: list[str]) -> dict[str, object]:
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r}: expected VAR=VALUE, e.g. final_sparsity=0.95")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    """Handler of ``sparseinfer sparsify``."""
    import torch

    from sparseinfer.sparsify.recipe import load_recipe

    torch.set_num_threads(args.threads)
    overrides = _overrides(args.set)
    load_recipe(args.recipe, overrides)  # fail early on a bad recipe
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model == DIGITS:
        report = _digits(args, overrides, out)
    elif args.model.startswith("zoo:"):
        report = _zoo(args, overrides, out)
    else:
        raise ValueError(f"unknown model {args.model!r}: expected zoo:NAME or '{DIGITS}'")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"  report:   {out / 'report.json'}")
    return 0 if report.get("engine_check", {}).get("equal", True) else 1


def _print_sparsity(report: list) -> None:
    for r in report:
        print(f"  {r.name:<48} {str(r.shape):<22} {r.sparsity:7.2%}")


def _check(args: argparse.Namespace, path: Path, model, inputs) -> dict:
    from sparseinfer.sparsify.export import check_in_engine

    if args.no_check:
        return {"skipped": True}
    check = check_in_engine(path, model, inputs, num_cores=args.threads, time_repeats=10)
    print(f"  engine vs PyTorch: {'EQUAL' if check.ok else 'DIFFERENT'} (max |diff| {check.max_abs_diff:.2e}); "
          f"median ms: engine {check.engine_ms:.3f}, PyTorch {check.torch_ms:.3f} ({args.threads} thread(s))")
    return {"equal": check.ok, "max_abs_diff": check.max_abs_diff, "engine_ms": check.engine_ms,
            "torch_ms": check.torch_ms, "threads": args.threads}


def _zoo(args: argparse.Namespace, overrides: dict, out: Path) -> dict:
    import torch

    from sparseinfer.sparsify.export import export_onnx
    from sparseinfer.sparsify.manager import RecipeManager
    from sparseinfer.zoo.stub import parse

    zoo_export = importlib.import_module("sparseinfer.zoo.export")  # the package re-binds `export` to a function

    stub = parse(args.model)
    if stub.variant != "dense":
        raise ValueError(f"{args.model}: expected a dense zoo model to prune (zoo:{stub.name}), got variant {stub.variant!r}")
    entry = stub.entry
    built = zoo_export.build(stub)
    model = built.model
    print(f"sparsify {args.model}: {entry.weights} weights; no training data for this model, so the recipe is "
          f"applied ONE-SHOT (final sparsities, no fine-tuning)"
          + ("; random weights: for speed measurement only" if entry.weights == "random" else
             "; no accuracy is claimed"))
    report = RecipeManager.from_yaml(args.recipe, overrides).one_shot(model)
    _print_sparsity(report)
    arrays = zoo_export.make_inputs(entry, batch_size=1, seq_len=128 if entry.is_text else None)
    order = zoo_export._forward_order(model, entry)
    dynamic = {n: ({0: "batch", 1: "sequence"} if entry.is_text else {0: "batch"}) for n in order}
    dynamic.update({n: {0: "batch"} for n in entry.outputs})
    exported = export_onnx(model, [torch.from_numpy(arrays[n]) for n in order], out / "model.onnx",
                           input_names=order, output_names=list(entry.outputs), dynamic_axes=dynamic)
    print(f"  exported: {exported.path}")
    check = _check(args, exported.path, model, [arrays[n] for n in order])
    return {"model": args.model, "recipe": str(args.recipe), "overrides": overrides, "mode": "one-shot",
            "weights": entry.weights, "onnx": str(exported.path),
            "sparsity": {r.name: r.sparsity for r in report}, "engine_check": check}


def _digits(args: argparse.Namespace, overrides: dict, out: Path) -> dict:
    from sparseinfer.sparsify import digits
    from sparseinfer.sparsify.export import export_onnx

    data = digits.load_data()
    print("sparsify digits: training the dense CNN on scikit-learn's digits, then the full recipe schedule")
    baseline = digits.train_baseline(data)
    base_acc = digits.accuracy(baseline, data.x_test, data.y_test)
    model, report = digits.prune_with_recipe(baseline, data, args.recipe, overrides)
    acc = digits.accuracy(model, data.x_test, data.y_test)
    _print_sparsity(report)
    print(f"  test accuracy: dense {base_acc:.2%}, pruned {acc:.2%} ({acc / base_acc:.2%} of baseline), "
          f"sparsity {digits.overall_sparsity(report):.1%} of the pruned layers")
    exported = export_onnx(model, data.x_test[:2], out / "model.onnx")
    print(f"  exported: {exported.path}")
    check = _check(args, exported.path, model, [data.x_test.numpy()])
    return {"model": DIGITS, "recipe": str(args.recipe), "overrides": overrides, "mode": "gradual (trained)",
            "baseline_test_accuracy": base_acc, "test_accuracy": acc, "onnx": str(exported.path),
            "sparsity": {r.name: r.sparsity for r in report}, "engine_check": check}
