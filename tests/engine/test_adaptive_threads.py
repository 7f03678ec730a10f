"""A plan on all cores or on one, whichever has been faster lately (compiler/adaptive_threads.py)."""

import numpy as np
from onnx import helper

import sparseinfer
from sparseinfer.compiler import CompiledGraph, adaptive_threads
from sparseinfer.compiler.adaptive_threads import PROBE_EVERY, AdaptiveThreads

from .conftest import f32, make_model, ort_run


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakePlan:
    """Runs take `seconds` of the fake clock; `ran` counts them."""

    def __init__(self, clock, num_threads, seconds):
        self.clock, self.num_threads, self.seconds, self.ran = clock, num_threads, seconds, 0
        self.twin = None

    def share(self, num_threads=None):
        self.twin = FakePlan(self.clock, num_threads, self.seconds)
        return self.twin

    def run(self, inputs, out=None):
        self.ran += 1
        self.clock.now += self.seconds
        return [self.num_threads]


def test_runs_the_faster_and_follows_a_change_of_state():
    clock = FakeClock()
    wide = FakePlan(clock, 2, 0.012)
    a = AdaptiveThreads(wide, clock=clock)
    narrow = wide.twin
    narrow.seconds = 0.018
    assert narrow.num_threads == 1 and a.narrow is narrow
    runs = [a.run([])[0] for _ in range(10 * PROBE_EVERY)]
    assert a.threads == 2
    # the slower one only on its first run (the second overall) and on every PROBE_EVERY-th
    assert runs[:2] == [2, 1] and runs.count(1) == 1 + 10
    assert all(r == 1 for i, r in enumerate(runs, 1) if i % PROBE_EVERY == 0)
    assert narrow.ran == runs.count(1) and wide.ran == runs.count(2)
    # the cross-core hand-offs slow down: the wide plan becomes the slower
    wide.seconds = 0.020
    for _ in range(4 * PROBE_EVERY):
        a.run([])
    assert a.threads == 1
    wide.seconds = 0.010
    for _ in range(4 * PROBE_EVERY):
        a.run([])
    assert a.threads == 2


def test_everything_but_run_is_the_wide_plans():
    clock = FakeClock()
    wide = FakePlan(clock, 2, 0.01)
    wide.report = ["r"]
    a = AdaptiveThreads(wide, clock=clock)
    assert a.report == ["r"] and a.num_threads == 2 and a.wide is wide


def _conv_model(rng):
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0.0
    return make_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                       helper.make_node("Relu", ["c"], ["y"])],
                      [f32("x", [1, 8, 20, 20])], [f32("y", [1, 16, 20, 20])], {"w": w})


def test_engine_on_two_cores_runs_both_and_both_equal_onnxruntime(rng):
    model = _conv_model(rng)
    engine = sparseinfer.compile_model(model, num_cores=2)
    a = engine._default
    assert isinstance(a, AdaptiveThreads) and a.wide.num_threads == 2 and a.narrow.num_threads == 1
    x = rng.standard_normal((1, 8, 20, 20)).astype(np.float32)
    want = ort_run(model, {"x": x})[0]
    for _ in range(2 * PROBE_EVERY):  # the first two runs are one each, then probes
        np.testing.assert_allclose(engine.run([x])[0], want, rtol=1e-4, atol=1e-4)
    assert None not in a._seconds
    assert engine.batching == "one plan" and engine.node_report == list(a.wide.report)


def test_one_core_or_large_activations_keep_one_plan(rng, monkeypatch):
    model = _conv_model(rng)
    assert isinstance(sparseinfer.compile_model(model, num_cores=1)._default, CompiledGraph)
    monkeypatch.setattr(adaptive_threads, "MAX_ARENA_BYTES", 0)
    assert isinstance(sparseinfer.compile_model(model, num_cores=2)._default, CompiledGraph)
