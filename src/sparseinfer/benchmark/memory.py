"""Peak memory of one engine, measured in a fresh process so engines do not share a heap.

Reports the process's peak resident set (VmHWM, see measure.peak_rss_mib) after loading the model, compiling it and
running it, and the same figure before the engine was built (imports and inputs only), so the
difference is what the engine itself costs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_in_subprocess(engine: str, model_path: str, batch_size: int, num_cores: int, iterations: int = 5,
                          timeout_s: float = 900) -> dict:
    cmd = [sys.executable, "-m", "sparseinfer.benchmark.memory", "--engine", engine, "--model", model_path,
           "--batch-size", str(batch_size), "--num-cores", str(num_cores), "--iterations", str(iterations)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe for {engine} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--engine", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-cores", type=int, default=1)
    p.add_argument("--iterations", type=int, default=5)
    a = p.parse_args(argv)
    import onnx

    from sparseinfer.benchmark.inputs import make_inputs
    from sparseinfer.benchmark.measure import peak_rss_mib
    from sparseinfer.benchmark.runners import make_runner

    model = onnx.load(a.model)
    feeds = make_inputs(model, a.batch_size)
    import onnxruntime  # noqa: F401 - both engines' libraries loaded in the baseline
    import sparseinfer  # noqa: F401

    base_rss = _rss_mib()
    base_peak = peak_rss_mib()
    run = make_runner(a.engine, model, a.batch_size, a.num_cores)
    del model
    for _ in range(a.iterations):
        run(feeds)
    peak = peak_rss_mib()
    print(json.dumps({"engine": a.engine, "baseline_rss_mib": base_rss, "baseline_peak_mib": base_peak,
                      "peak_rss_mib": peak, "rss_after_mib": _rss_mib()}))


if __name__ == "__main__":
    main()
