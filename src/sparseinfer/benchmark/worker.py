"""An engine in its own process, driven line by line over stdin/stdout (JSON), so that
``compare``, the multi-instance scenario and async runs of several engines measure each engine
with its own heap, threads and CPU accounting while the parent decides who runs when.

The child runs in one of two ways:

* ``python -m sparseinfer.benchmark.worker --engine E ...``: any engine of
  :data:`sparseinfer.benchmark.runners.PEERS`, in this environment;
* ``VENV/bin/python .../sparseinfer/benchmark/worker.py --engine deepsparse ...``: DeepSparse,
  from its own virtual environment (deepsparse 1.8 pins older numpy/onnx than ours). Run by
  path like this the module imports only the standard library, NumPy, its sibling
  ``measure.py`` and deepsparse - never sparseinfer.

Every engine gets the same inputs: the parent writes them to an ``.npz`` (``--inputs``).

Requests: ``{"cmd": "slice", "seconds": s, "min_iters": n, "start_at": epoch (optional)}`` ->
a :class:`~sparseinfer.benchmark.measure.Slice`; ``{"cmd": "async", "warmup_s": w,
"seconds": s}`` -> a :class:`~sparseinfer.benchmark.measure.BenchmarkResult` over
``--num-streams`` streams; ``{"cmd": "infer", "inputs": npz or null, "path": npz}`` -> the
outputs (on the shared inputs when ``inputs`` is null) saved to ``path``; ``{"cmd": "quit"}``.
Every reply is one JSON line; the first is ``{"ready": ...}`` or ``{"error": ...}``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

    from sparseinfer.benchmark.measure import BenchmarkResult, LocalEngine, Progress, Slice


def save_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Named arrays, in order, to an .npz (names need not be valid file names)."""
    np.savez(path, *arrays.values(), __names__=np.array(list(arrays), dtype=str))


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """The inverse of :func:`save_arrays`."""
    with np.load(path, allow_pickle=False) as z:
        names = [str(n) for n in z["__names__"]]
        return {n: z[f"arr_{i}"] for i, n in enumerate(names)}


def _measure_module():
    """sparseinfer.benchmark.measure, or the same file loaded by path when this module runs as
    a script in another environment (where the sparseinfer package cannot be imported)."""
    if __package__:
        from sparseinfer.benchmark import measure

        return measure
    name = "_sparseinfer_measure"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("measure.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


def _deepsparse_runners(model_path: str, feeds: dict, batch_size: int, num_cores: int, streams: int,
                        workdir: str):
    """DeepSparse as its own benchmark runs it: one engine; for several streams its
    multi-stream scheduler, which the stream threads share. It gets a private copy of the
    model: given input shapes, deepsparse 1.8 rewrites the ONNX file in place."""
    import shutil

    import deepsparse

    private = os.path.join(workdir, "deepsparse-model.onnx")
    shutil.copyfile(model_path, private)
    kwargs: dict[str, Any] = {"batch_size": batch_size, "num_cores": num_cores,
                              "input_shapes": [list(a.shape) for a in feeds.values()]}
    if streams > 1:
        kwargs.update(num_streams=streams, scheduler=deepsparse.Scheduler.multi_stream)
    engine = deepsparse.compile_model(private, **kwargs)
    names = list(feeds)

    def run(f: dict) -> list:
        return engine.run([f[n] for n in names])
    return [run] * streams, f"deepsparse {getattr(deepsparse, '__version__', '?')}"


def _local_runners(a: argparse.Namespace, feeds: dict):
    from sparseinfer.benchmark.inputs import load_model
    from sparseinfer.benchmark.measure import split_cores
    from sparseinfer.benchmark.runners import make_runner

    model, _ = load_model(a.model)
    cores = [a.num_cores] if a.num_streams == 1 else split_cores(a.num_cores, a.num_streams)
    shapes = {k: np.shape(v) for k, v in feeds.items()}  # e.g. a text model's sequence length
    return [make_runner(a.engine, model, a.batch_size, c, a.source, shapes) for c in cores], None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", required=True)
    p.add_argument("--model", required=True, help="local .onnx path")
    p.add_argument("--inputs", required=True, help=".npz of the inputs (see save_arrays)")
    p.add_argument("--source", default=None, help="the model as the user named it (zoo stub)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-cores", type=int, default=1)
    p.add_argument("--num-streams", type=int, default=1)
    a = p.parse_args(argv)
    # Our protocol owns the real stdout; anything engines print goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    m = _measure_module()
    try:
        t0 = time.perf_counter()
        feeds = load_arrays(a.inputs)
        if a.engine == "deepsparse":  # the only engine this module runs by path
            runners, version = _deepsparse_runners(a.model, feeds, a.batch_size, a.num_cores, a.num_streams,
                                                   os.path.dirname(os.path.abspath(a.inputs)))
        else:
            runners, version = _local_runners(a, feeds)
        runners[0](feeds)
        reply({"ready": True, "build_s": time.perf_counter() - t0, "pid": os.getpid(), "version": version,
               "python": sys.executable, "peak_rss_mib": m.peak_rss_mib()})
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.get("cmd")
        try:
            if cmd == "slice":
                start_at = req.get("start_at")
                if start_at:
                    time.sleep(max(0.0, start_at - time.time()))
                reply(m.time_slice(runners[0], feeds, float(req["seconds"]), int(req.get("min_iters", 1))).as_dict())
            elif cmd == "async":
                r = m.measure_async(a.engine, runners, feeds, a.batch_size, a.num_cores, float(req["warmup_s"]),
                                    float(req["seconds"]))
                r.peak_rss_mib = m.peak_rss_mib()
                reply(r.as_dict())
            elif cmd == "infer":
                outs = runners[0](load_arrays(req["inputs"]) if req.get("inputs") else feeds)
                save_arrays(req["path"], {str(i): np.asarray(o) for i, o in enumerate(outs)})
                reply({"saved": req["path"], "count": len(outs)})
            elif cmd == "quit":
                reply({"peak_rss_mib": m.peak_rss_mib()})
                return 0
            else:
                reply({"error": f"unknown command {cmd!r}"})
        except Exception as exc:  # noqa: BLE001
            reply({"error": f"{type(exc).__name__}: {exc}"})
    return 0


class Worker:
    """Parent side: one engine in a child process (see the module docstring), timed like a
    :class:`~sparseinfer.benchmark.measure.LocalEngine`. DeepSparse runs under the Python that
    :func:`~sparseinfer.benchmark.runners.deepsparse_python` finds; every other engine under
    this one. Raises :class:`~sparseinfer.benchmark.runners.PeerNotInstalled` when that
    Python is missing."""

    def __init__(self, engine: str, model_path: str, feeds: dict[str, np.ndarray], batch_size: int,
                 num_cores: int, streams: int = 1, source: str | None = None):
        self.engine, self.feeds = engine, feeds
        from sparseinfer.benchmark.runners import PEERS, deepsparse_env, deepsparse_python

        if PEERS[engine].external:  # run by path under its own Python (module docstring)
            cmd, env = [deepsparse_python(), os.path.abspath(__file__)], deepsparse_env()
        else:
            cmd, env = [sys.executable, "-m", "sparseinfer.benchmark.worker"], dict(os.environ)
            src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self._tmp = tempfile.TemporaryDirectory(prefix=f"sparseinfer-{engine}-")
        inputs = os.path.join(self._tmp.name, "inputs.npz")
        save_arrays(inputs, feeds)
        cmd += ["--engine", engine, "--model", model_path, "--inputs", inputs, "--batch-size", str(batch_size),
                "--num-cores", str(num_cores), "--num-streams", str(streams)]
        if source:
            cmd += ["--source", source]
        # stderr to a file, not a pipe nobody reads: a chatty engine would fill the pipe and block.
        self._stderr = open(os.path.join(self._tmp.name, "stderr.txt"), "w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, env=env, bufsize=1)
        self.ready: dict | None = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _stderr_tail(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().strip()[-1500:]

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"engine {self.engine} process exited ({self.proc.returncode}): {self._stderr_tail()}")
        return json.loads(line)

    def receive(self) -> dict:
        msg = self._read()
        if "error" in msg:
            raise RuntimeError(f"engine {self.engine}: {msg['error']}")
        return msg

    def request(self, **req: Any) -> dict:
        self.send(**req)
        return self.receive()

    def time_slice(self, seconds: float, min_iters: int = 1) -> Slice:
        """Times back-to-back requests for ``seconds`` in the child (its CPU and memory)."""
        m = _measure_module()
        return m.Slice(**self.request(cmd="slice", seconds=seconds, min_iters=min_iters))

    def run_async(self, warmup_s: float, time_s: float, progress: Progress | None = None) -> BenchmarkResult:
        """The async scenario over the child's streams."""
        m = _measure_module()
        if progress:
            progress.set_description(f"{self.engine} async")
        r = m.BenchmarkResult(**self.request(cmd="async", warmup_s=warmup_s, seconds=time_s))
        if progress:
            progress.advance(warmup_s + time_s)
        return r

    def __call__(self, feeds: dict) -> list[np.ndarray]:
        """One request on other inputs (slow: the arrays go through files)."""
        path = os.path.join(self._tmp.name, "feeds.npz")
        save_arrays(path, feeds)
        return self._infer(path)

    def outputs(self) -> list[np.ndarray]:
        """The outputs on the shared inputs."""
        return self._infer(None)

    def _infer(self, inputs: str | None) -> list[np.ndarray]:
        out = os.path.join(self._tmp.name, "outputs.npz")
        self.request(cmd="infer", inputs=inputs, path=out)
        return list(load_arrays(out).values())

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
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                f.close()
        self._stderr.close()
        self._tmp.cleanup()
        return out


def open_engine(engine: str, model: onnx.ModelProto, model_path: str, feeds: dict[str, np.ndarray],
                batch_size: int, num_cores: int, streams: int = 1, source: str | None = None,
                isolate: bool = False) -> LocalEngine | Worker:
    """``engine`` built and warmed once, ready to time: in this process, or in its own when
    ``isolate``, when the engine needs another Python (DeepSparse) or when its thread count is
    fixed once per process (TensorFlow, JAX). Close it when done."""
    from sparseinfer.benchmark.measure import LocalEngine
    from sparseinfer.benchmark.runners import PEERS

    peer = PEERS[engine]
    if isolate or peer.external or peer.own_process:
        w = Worker(engine, model_path, feeds, batch_size, num_cores, streams, source)
        w.wait_ready()
        return w
    local = LocalEngine(engine, model, feeds, batch_size, num_cores, streams, source)
    local(feeds)
    return local


if __name__ == "__main__":
    if not __package__:  # run by path: our folder's modules must not shadow theirs (e.g. inputs, report)
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
    sys.exit(main())
