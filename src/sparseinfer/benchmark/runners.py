"""One runner per engine: build it for (model, batch, cores), then call it on inputs.

The registry :data:`PEERS` names every engine ``sparseinfer benchmark/compare`` can run, with
the pip package that provides it. An engine whose package is missing raises
:class:`PeerNotInstalled` (an ``ImportError``) whose message says how to install it.

``openvino`` is reported twice: ``openvino-f32`` (inference precision forced to f32) and
``openvino-default`` (OpenVINO's own choice: bf16 on CPUs that have AVX-512 BF16/AMX).
``torch`` / ``torch-compile`` run the PyTorch model a ``zoo:`` stub exports (eager and
``torch.compile``); ``tensorflow`` / ``jax`` run models the zoo defines in them (plain MLPs such
as ``zoo:mlp6``, rebuilt from the exported weights). ``deepsparse`` runs in its own process,
from its own Python environment (see :func:`deepsparse_python`), through
:class:`sparseinfer.benchmark.worker.Worker`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx

from sparseinfer.benchmark.measure import RunFn

#: The input shapes an engine is built for (name -> shape); None: the model's own with the batch set.
InputShapes = Mapping[str, Sequence[int]]

#: The Python of a virtual environment with deepsparse (what --deepsparse-python sets).
DEEPSPARSE_PYTHON_ENV = "SPARSEINFER_DEEPSPARSE_PYTHON"


class PeerNotInstalled(ImportError):
    """A peer engine whose Python package is not installed."""


@dataclass(frozen=True)
class Peer:
    """An engine: its factory, the module it needs and the pip requirement that provides it."""

    name: str
    factory: Callable[..., RunFn]
    module: str
    pip: str
    needs_zoo: bool = False  # runs the zoo's framework definition, not the ONNX file
    external: bool = False  # runs only in its own process, from another Python (deepsparse_python)
    own_process: bool = False  # thread count fixed once per process: the tool builds it in a fresh one

    def installed(self) -> bool:
        try:
            self.require()
        except PeerNotInstalled:
            return False
        return True

    def require(self) -> None:
        """Raises :class:`PeerNotInstalled` with the install command when the package is missing."""
        if self.external:
            deepsparse_python()
        elif importlib.util.find_spec(self.module) is None:
            raise PeerNotInstalled(f"engine {self.name!r} skipped: {self.module} is not installed "
                                   f"(pip install {self.pip})")


def _sparseinfer(model: onnx.ModelProto, batch_size: int, num_cores: int, source: str | None = None,
                 input_shapes: InputShapes | None = None) -> RunFn:
    import sparseinfer

    engine = sparseinfer.compile_model(model, batch_size=batch_size, num_cores=num_cores, input_shapes=input_shapes)
    names = engine.input_names
    run = engine.run
    return lambda feeds: run([feeds[n] for n in names])


def _onnxruntime(model: onnx.ModelProto, batch_size: int, num_cores: int, source: str | None = None,
                 input_shapes: InputShapes | None = None) -> RunFn:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_cores
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    run = sess.run
    return lambda feeds: run(None, feeds)


def _openvino(precision: str | None) -> Callable[..., RunFn]:
    def factory(model: onnx.ModelProto, batch_size: int, num_cores: int, source: str | None = None,
                input_shapes: InputShapes | None = None) -> RunFn:
        import openvino as ov

        core = ov.Core()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.onnx")
            onnx.save(model, path)
            ov_model = core.read_model(path)
            feeds_shape = _feed_shapes(model, batch_size, input_shapes)
            ov_model.reshape({k: ov.PartialShape(v) for k, v in feeds_shape.items()})
            config = {"INFERENCE_NUM_THREADS": int(num_cores), "PERFORMANCE_HINT": "LATENCY",
                      "NUM_STREAMS": 1}
            if precision:
                config["INFERENCE_PRECISION_HINT"] = precision
            compiled = core.compile_model(ov_model, "CPU", config)
        request = compiled.create_infer_request()
        names = [i.get_any_name() for i in compiled.inputs]

        def run(feeds: dict) -> list:
            res = request.infer({n: feeds[n] for n in names})
            return [np.asarray(v) for v in res.values()]
        return run
    return factory


def _feed_shapes(model: onnx.ModelProto, batch_size: int, input_shapes: InputShapes | None) -> dict[str, list[int]]:
    from sparseinfer.graph.onnx_import import resolve_input_shapes

    return {k: list(v) for k, v in resolve_input_shapes(model, batch_size, input_shapes).items()}


_DEEPSPARSE_FOUND: dict[str, str] = {}  # python -> deepsparse version, once per process


def deepsparse_python(python: str | None = None) -> str:
    """The Python that runs DeepSparse: ``python``, else $SPARSEINFER_DEEPSPARSE_PYTHON (what
    ``--deepsparse-python`` sets), else this one when deepsparse is importable here. DeepSparse
    1.8 pins older numpy/onnx than sparseinfer, so it normally lives in a virtual environment
    of its own. Raises :class:`PeerNotInstalled` saying how to create one when there is no such
    Python or deepsparse cannot be imported by it."""
    python = python or os.environ.get(DEEPSPARSE_PYTHON_ENV) or (
        sys.executable if importlib.util.find_spec("deepsparse") else None)
    how = (f"DeepSparse 1.8 pins older numpy/onnx than sparseinfer, so it runs from its own virtual environment: "
           f"python -m venv VENV && VENV/bin/pip install deepsparse==1.8.0, then pass --deepsparse-python "
           f"VENV/bin/python (or set {DEEPSPARSE_PYTHON_ENV})")
    if not python:
        raise PeerNotInstalled(f"engine 'deepsparse' skipped: no Python with deepsparse given. {how}")
    if python in _DEEPSPARSE_FOUND:
        return python
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise PeerNotInstalled(f"engine 'deepsparse' skipped: {python} is not an executable Python. {how}")
    try:
        res = subprocess.run([python, "-c", "import deepsparse; print(deepsparse.__version__)"],
                             capture_output=True, text=True, timeout=300, env=deepsparse_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerNotInstalled(f"engine 'deepsparse' skipped: {python} failed to run ({exc}). {how}") from None
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeerNotInstalled(f"engine 'deepsparse' skipped: deepsparse is not importable by {python} ({last}). "
                               f"{how}")
    _DEEPSPARSE_FOUND[python] = res.stdout.strip()
    return python


def deepsparse_env() -> dict[str, str]:
    """The environment of DeepSparse's processes: this one minus PYTHONPATH (its Python must not
    see our packages), with DeepSparse's analytics off (it would send usage events over the
    network and look up the country for GDPR on import and on every engine built)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["NM_DISABLE_ANALYTICS"] = "1"
    return env


def _external(model: onnx.ModelProto, batch_size: int, num_cores: int, source: str | None = None,
              input_shapes: InputShapes | None = None) -> RunFn:
    raise ValueError("engine 'deepsparse' runs in its own process (its own Python environment): use "
                     "sparseinfer.benchmark.worker.open_engine or Worker, not an in-process runner")


def _require_stub(engine: str, source: str | None) -> str:
    if not source or not source.startswith("zoo:"):
        raise ValueError(f"engine {engine!r} runs the zoo's PyTorch definition and needs a zoo:NAME stub "
                         f"as the model, got {source!r}")
    return source


def _torch(compile_: bool) -> Callable[..., RunFn]:
    def factory(model: onnx.ModelProto, batch_size: int, num_cores: int, source: str | None = None,
                input_shapes: InputShapes | None = None) -> RunFn:
        import torch

        from sparseinfer import zoo

        stub = _require_stub("torch-compile" if compile_ else "torch", source)
        torch.set_num_threads(int(num_cores))
        net, example = zoo.build_torch_model(stub)
        order = list(example)
        if compile_:
            net = torch.compile(net)

        def run(feeds: dict) -> list:
            with torch.inference_mode():
                out = net(*[torch.from_numpy(feeds[n]) for n in order])
            outs = out if isinstance(out, (tuple, list)) else [out]
            return [o.numpy() for o in outs]
        return run
    return factory


def mlp_layers(model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray | None, str]]:
    """(weight as (in, out), bias, activation) per layer of a plain MLP ONNX graph (Gemm/MatMul,
    Add, Relu, Sigmoid). Raises ValueError for any other graph: TensorFlow and JAX runners are
    defined only for the zoo's MLPs."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers: list[list] = []
    for node in model.graph.node:
        if node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            w = inits[node.input[1]]
            w = w.T if attrs.get("transB", 0) else w
            b = inits.get(node.input[2]) if len(node.input) > 2 else None
            layers.append([w.astype(np.float32), b, "linear"])
        elif node.op_type == "MatMul" and node.input[1] in inits:
            layers.append([inits[node.input[1]].astype(np.float32), None, "linear"])
        elif node.op_type == "Add" and layers and node.input[1] in inits:
            layers[-1][1] = inits[node.input[1]]
        elif node.op_type in ("Relu", "Sigmoid") and layers:
            layers[-1][2] = node.op_type.lower()
        else:
            raise ValueError(f"the TensorFlow/JAX runners are defined for the zoo's plain MLPs (e.g. zoo:mlp6); "
                             f"this model has a {node.op_type} node")
    return [(w, b, act) for w, b, act in layers]


def _tensorflow(model: onnx.ModelProto, batch_size: int, num_cores: int, source: str | None = None,
                input_shapes: InputShapes | None = None) -> RunFn:
    mlp = mlp_layers(model)  # before the import: a model it does not define fails fast
    import tensorflow as tf

    # TensorFlow's thread pools are per process and fixed at first use (hence Peer.own_process).
    if tf.config.threading.get_intra_op_parallelism_threads() != num_cores:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(num_cores))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            raise ValueError(f"TensorFlow already runs with {tf.config.threading.get_intra_op_parallelism_threads()} "
                             f"threads in this process and cannot change to {num_cores}: build each thread count "
                             f"in its own process (sparseinfer.benchmark.worker.open_engine does)") from None
    layers = [(tf.constant(w), None if b is None else tf.constant(b), act) for w, b, act in mlp]
    name = model.graph.input[0].name

    @tf.function(jit_compile=False)
    def forward(x):
        for w, b, act in layers:
            x = tf.matmul(x, w) + (b if b is not None else 0.0)
            x = tf.nn.relu(x) if act == "relu" else tf.sigmoid(x) if act == "sigmoid" else x
        return x
    return lambda feeds: [forward(tf.constant(feeds[name])).numpy()]


def _jax(model: onnx.ModelProto, batch_size: int, num_cores: int, source: str | None = None,
         input_shapes: InputShapes | None = None) -> RunFn:
    mlp = mlp_layers(model)  # before the import: a model it does not define fails fast
    if num_cores == 1 and "jax" not in sys.modules:
        # XLA's CPU thread pool is per process, sized at import; one core is the only count it
        # takes as a flag (more cores: XLA's own choice, all of them).
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    import jax
    import jax.numpy as jnp

    layers = [(jnp.asarray(w), None if b is None else jnp.asarray(b), act) for w, b, act in mlp]
    name = model.graph.input[0].name

    @jax.jit
    def forward(x):
        for w, b, act in layers:
            x = x @ w + (b if b is not None else 0.0)
            x = jax.nn.relu(x) if act == "relu" else jax.nn.sigmoid(x) if act == "sigmoid" else x
        return x
    return lambda feeds: [np.asarray(forward(feeds[name]).block_until_ready())]


PEERS: dict[str, Peer] = {p.name: p for p in [
    Peer("sparseinfer", _sparseinfer, "sparseinfer", "sparseinfer"),
    Peer("onnxruntime", _onnxruntime, "onnxruntime", "onnxruntime"),
    Peer("openvino-f32", _openvino("f32"), "openvino", "openvino"),
    Peer("openvino-default", _openvino(None), "openvino", "openvino"),
    Peer("deepsparse", _external, "deepsparse", "deepsparse==1.8.0", external=True),
    Peer("torch", _torch(False), "torch", "torch==2.13.0", needs_zoo=True),
    Peer("torch-compile", _torch(True), "torch", "torch==2.13.0", needs_zoo=True),
    Peer("tensorflow", _tensorflow, "tensorflow", "tensorflow-cpu", own_process=True),
    Peer("jax", _jax, "jax", "'jax[cpu]'", own_process=True),
]}

#: Short names that stand for several engines.
ALIASES: dict[str, list[str]] = {"openvino": ["openvino-f32", "openvino-default"],
                                 "torch-all": ["torch", "torch-compile"]}

RUNNERS: dict[str, Callable[..., RunFn]] = {n: p.factory for n, p in PEERS.items()}


def expand_engines(spec: str | list[str]) -> list[str]:
    """'sparseinfer,openvino' -> ['sparseinfer', 'openvino-f32', 'openvino-default']. Raises
    ValueError naming unknown engines and the available ones."""
    names = [e.strip() for e in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for n in names:
        if not n:
            continue
        for e in ALIASES.get(n, [n]):
            if e not in out:
                out.append(e)
    unknown = [e for e in out if e not in PEERS]
    if unknown:
        raise ValueError(f"unknown engine(s) {unknown}; available: {', '.join([*PEERS, *ALIASES])}")
    if not out:
        raise ValueError("no engine given; expected e.g. --engines sparseinfer,onnxruntime")
    return out


def split_installed(engines: list[str]) -> tuple[list[str], list[str]]:
    """(installed engines, one skip message per missing one)."""
    ok, skipped = [], []
    for e in engines:
        try:
            PEERS[e].require()
            ok.append(e)
        except PeerNotInstalled as exc:
            skipped.append(str(exc))
    return ok, skipped


def make_runner(engine: str, model: onnx.ModelProto, batch_size: int, num_cores: int,
                source: str | None = None, input_shapes: InputShapes | None = None) -> RunFn:
    """Builds ``engine`` for ``model`` at ``batch_size`` on ``num_cores`` cores. ``source`` is the
    model argument as the user gave it (a ``zoo:`` stub is needed by the torch runners);
    ``input_shapes`` (name -> shape, e.g. the shapes of the inputs it will run on) fixes the
    symbolic dimensions other than the batch, such as a text model's sequence length."""
    if engine not in PEERS:
        raise ValueError(f"unknown engine {engine!r}; available: {', '.join(PEERS)}")
    peer = PEERS[engine]
    peer.require()
    return peer.factory(model, batch_size, num_cores, source, input_shapes)
