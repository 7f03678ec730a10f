"""Prune a CNN on scikit-learn's handwritten digits to 80/90/95% with the shipped recipe
``digits_gmp``, export each model to ONNX, check the engine against PyTorch and time both.

    python examples/digits_gmp.py --out /tmp/digits [--threads 1]

Prints a Markdown table and writes ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from sparseinfer.sparsify.digits import format_table, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="digits_out", help="directory for the ONNX files and results.json")
    parser.add_argument("--levels", default="0.8,0.9,0.95", help="comma-separated final sparsities")
    parser.add_argument("--threads", type=int, default=1, help="threads for PyTorch and the engine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    levels = tuple(float(v) for v in args.levels.split(","))
    results = run_experiment(levels, args.out, num_cores=args.threads)
    print(format_table(results))
    Path(args.out, "results.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
