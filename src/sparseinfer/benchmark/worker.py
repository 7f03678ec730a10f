"""An engine in its own process, driven line by line over stdin/stdout (JSON), so that
``compare`` and the multi-instance scenario measure each engine with its own heap, threads and
CPU accounting while the parent decides who runs when.

Requests: ``{"cmd": "warmup"|"run", "seconds": s, "start_at": epoch (optional)}``,
``{"cmd": "outputs", "path": p}`` (np.savez of the outputs on the shared inputs),
``{"cmd": "quit"}``. Every reply is one JSON line; the first is ``{"ready": ...}`` or
``{"error": ...}``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", required=True)
    p.add_argument("--model", required=True, help="local .onnx path")
    p.add_argument("--source", default=None, help="the model as the user named it (zoo stub)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-cores", type=int, default=1)
    p.add_argument("--input-shapes", default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    # Our protocol owns the real stdout; anything engines print goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    from sparseinfer.benchmark.inputs import feeds_for, load_model
    from sparseinfer.benchmark.measure import cpu_seconds, peak_rss_mib
    from sparseinfer.benchmark.runners import make_runner

    try:
        t0 = time.perf_counter()
        model, _ = load_model(a.model)
        feeds = feeds_for(model, a.batch_size, a.input_shapes, seed=a.seed)
        run = make_runner(a.engine, model, a.batch_size, a.num_cores, a.source)
        del model
        first = run(feeds)
        reply({"ready": True, "build_s": time.perf_counter() - t0, "pid": os.getpid()})
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.get("cmd")
        try:
            if cmd in ("warmup", "run"):
                start_at = req.get("start_at")
                if start_at:
                    time.sleep(max(0.0, start_at - time.time()))
                lat: list[float] = []
                c0, w0 = cpu_seconds(), time.perf_counter()
                end = w0 + float(req["seconds"])
                min_iters = int(req.get("min_iters", 1))
                while len(lat) < min_iters or time.perf_counter() < end:
                    s = time.perf_counter()
                    run(feeds)
                    lat.append(time.perf_counter() - s)
                wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
                reply({"latencies": lat if cmd == "run" else [], "wall_s": wall, "cpu_s": cpu,
                       "peak_rss_mib": peak_rss_mib()})
            elif cmd == "outputs":
                outs = run(feeds)
                np.savez(req["path"], *[np.asarray(o) for o in outs])
                reply({"saved": req["path"], "count": len(outs)})
            elif cmd == "quit":
                reply({"peak_rss_mib": peak_rss_mib()})
                return 0
            else:
                reply({"error": f"unknown command {cmd!r}"})
        except Exception as exc:  # noqa: BLE001
            reply({"error": f"{type(exc).__name__}: {exc}"})
    del first
    return 0


class Worker:
    """Parent side: starts ``python -m sparseinfer.benchmark.worker`` for one engine."""

    def __init__(self, engine: str, model_path: str, source: str | None, batch_size: int, num_cores: int,
                 input_shapes: str | None = None, seed: int = 0, timeout_s: float = 1800):
        self.engine = engine
        self.timeout_s = timeout_s
        cmd = [sys.executable, "-m", "sparseinfer.benchmark.worker", "--engine", engine, "--model", model_path,
               "--batch-size", str(batch_size), "--num-cores", str(num_cores), "--seed", str(seed)]
        if source:
            cmd += ["--source", source]
        if input_shapes:
            cmd += ["--input-shapes", input_shapes]
        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, bufsize=1)
        self.ready: dict | None = None

    def wait_ready(self) -> dict:
        msg = self._read()
        if "error" in msg:
            self.close()
            raise RuntimeError(f"engine {self.engine} failed to start: {msg['error']}")
        self.ready = msg
        return msg

    def send(self, **req: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait()
            raise RuntimeError(f"engine {self.engine} process exited ({self.proc.returncode}): "
                               f"{err.strip()[-1500:]}")
        return json.loads(line)

    def request(self, **req: Any) -> dict:
        self.send(**req)
        return self.receive()

    def receive(self) -> dict:
        msg = self._read()
        if "error" in msg:
            raise RuntimeError(f"engine {self.engine}: {msg['error']}")
        return msg

    def close(self) -> dict | None:
        out = None
        if self.proc.poll() is None:
            try:
                out = self.request(cmd="quit")
            except (RuntimeError, BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return out


if __name__ == "__main__":
    sys.exit(main())
