"""Per layer: sparseinfer's profile against DeepSparse's debug analysis, same model, batch, cores.

Where does an engine-level gap (benchmarks/sparse_vs_deepsparse.py) come from? DeepSparse times
its compiled subgraphs (``deepsparse.debug_analysis``, run from its own virtual environment as
in sparse_vs_deepsparse.py); sparseinfer's per-node profile is summed over the same groups of
ONNX nodes (sparseinfer.benchmark.peer_layers). One core by default: per-core efficiency,
without either engine's threading.

    python benchmarks/layers_vs_deepsparse.py --deepsparse-python /opt/ds/bin/python
    python benchmarks/layers_vs_deepsparse.py --model vgg16-pruned90 --batch 64 --cores 1

Prints one JSON document: per DeepSparse row the layers it covers, both engines' ms per image and
the ratio, totals per row kind (pyramid, ks_convolution, ...) and our unmatched rows.
"""

from __future__ import annotations

import argparse
import json

import onnx

import sparseinfer
from sparseinfer import zoo
from sparseinfer.benchmark import make_inputs
from sparseinfer.benchmark.analyze import layer_profile
from sparseinfer.benchmark.peer_layers import compare_rows, layers_of_rows, parse_debug_analysis, run_debug_analysis
from sparseinfer.benchmark.runners import deepsparse_python


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50-pruned90", help="zoo model (default resnet50-pruned90)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--cores", type=int, default=1)
    p.add_argument("--iterations", type=int, default=3, help="DeepSparse's timed runs (and our profile's)")
    p.add_argument("--deepsparse-python", default=None, help="a Python with deepsparse==1.8.0")
    a = p.parse_args()

    path = str(zoo.resolve(f"zoo:{a.model}"))
    model = onnx.load(path)
    rows, ds_batch = parse_debug_analysis(run_debug_analysis(deepsparse_python(a.deepsparse_python), path, a.batch,
                                                             a.cores, a.iterations))
    engine = sparseinfer.compile_model(model, batch_size=a.batch, num_cores=a.cores)
    feeds = make_inputs(model, a.batch)
    profile, per_image = layer_profile(engine, [feeds[n] for n in engine.input_names], a.iterations)
    result = compare_rows(rows, layers_of_rows(model, rows), ds_batch, profile, per_image)
    print(json.dumps({"model": a.model, "batch": a.batch, "cores": a.cores,
                      "sparseinfer_batching": engine.batching, **result}, indent=1))


if __name__ == "__main__":
    main()
