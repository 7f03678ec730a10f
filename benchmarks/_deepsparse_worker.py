"""DeepSparse, timed in its own process (its own virtual environment: deepsparse==1.8.0 pins
an older onnx/numpy than ours). Started by benchmarks/sparse_vs_deepsparse.py; speaks one JSON
document per line on stdout, reads commands on stdin:

    time SECONDS MIN_ITERS   -> {"latencies_s": [...]}
    outputs PATH             -> writes the outputs of one run to PATH (.npz), {"ok": true}
    quit

Only the standard library, numpy and deepsparse are imported here (never sparseinfer)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--num-cores", type=int, required=True)
    p.add_argument("--inputs", required=True, help=".npz with the inputs in model order (arr_0, arr_1, ...)")
    a = p.parse_args()
    import numpy as np
    import deepsparse

    data = np.load(a.inputs)
    feeds = [data[f"arr_{i}"] for i in range(len(data.files))]
    engine = deepsparse.compile_model(a.model, batch_size=a.batch_size, num_cores=a.num_cores)
    engine.run(feeds)
    print(json.dumps({"ready": True, "version": getattr(deepsparse, "__version__", "?"),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] == "time":
            seconds, min_iters = float(cmd[1]), int(cmd[2])
            lat: list[float] = []
            end = time.perf_counter() + seconds
            while len(lat) < min_iters or time.perf_counter() < end:
                t0 = time.perf_counter()
                engine.run(feeds)
                lat.append(time.perf_counter() - t0)
            print(json.dumps({"latencies_s": lat,
                              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
        elif cmd[0] == "outputs":
            np.savez(cmd[1], *engine.run(feeds))
            print(json.dumps({"ok": True}), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {cmd[0]!r}"}), flush=True)


if __name__ == "__main__":
    main()
