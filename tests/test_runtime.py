import os
import subprocess
import sys

import pytest

from sparseinfer import _core


def test_isa_detection_is_consistent():
    feats = _core.cpu_features()
    best = _core.best_isa()
    assert best in ("avx512", "avx2", "portable")
    if best == "avx512":
        assert feats["avx512f"] and feats["avx512bw"] and feats["avx512vl"]
    if best in ("avx512", "avx2"):
        assert feats["avx2"] and feats["fma"]
    assert _core.physical_core_count() >= 1


def test_forcing_an_isa_by_env_var():
    code = "from sparseinfer import _core; print(_core.active_isa())"
    env = dict(os.environ, SPARSEINFER_ISA="portable")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "portable"


def test_unknown_isa_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        _core.set_active_isa("sse9")


def test_cross_core_round_trip_probe():
    """A cache line's round trip between the first two CPUs of the affinity mask: a plausible
    positive time with two or more CPUs, -1 with one (and for no round trips)."""
    v = _core.cross_core_round_trip_ns(2000)
    if len(os.sched_getaffinity(0)) > 1:
        assert 1 < v < 1e6
    else:
        assert v == -1
    assert _core.cross_core_round_trip_ns(0) == -1
