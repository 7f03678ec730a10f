"""Sensitivity analysis of the dense digits CNN on the validation split: each Conv/Linear weight
pruned alone to 50..98%, validation accuracy drop per level; writes a table, JSON, a PNG and a
recipe with per-layer targets.

    python examples/digits_sensitivity.py --out /tmp/digits_sens [--max-drop 0.005]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sparseinfer.sparsify import digits
from sparseinfer.sparsify.sensitivity import analyze, targets_to_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="digits_sensitivity")
    parser.add_argument("--max-drop", type=float, default=0.005, help="accepted validation-accuracy drop per layer")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = digits.load_data()
    model = digits.train_baseline(data)
    result = analyze(model, lambda m: digits.accuracy(m, data.x_val, data.y_val),
                     levels=(0.5, 0.7, 0.8, 0.9, 0.95, 0.98))
    print(result.table())
    result.save_json(out / "sensitivity.json")
    result.plot(out / "sensitivity.png", title="digits CNN: validation accuracy drop, one layer pruned at a time")
    targets = result.targets(args.max_drop)
    print("\nper-layer targets (max drop %.3f):" % args.max_drop, targets)
    (out / "recipe.yaml").write_text(targets_to_recipe(targets, end_epoch=10))
    print(f"wrote {out}/sensitivity.json, sensitivity.png, recipe.yaml")


if __name__ == "__main__":
    main()
