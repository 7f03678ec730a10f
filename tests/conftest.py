"""Suite-wide fixtures. The zoo cache of a test session lives in pytest's temporary folder
(never the user's home) and is shared by the xdist workers of that session, so each zoo model
is exported once per run whatever test file asks for it first (exports are written atomically
and checked by hash, so two workers racing on one model only cost time)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def zoo_cache_dir(tmp_path_factory):
    """Points SPARSEINFER_ZOO_DIR at the run's shared temp dir for the whole test session."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "zoo_cache"
    path.mkdir(parents=True, exist_ok=True)
    # gzip -9 of the big pruned models takes minutes: measured only where a test asks for it.
    settings = {"SPARSEINFER_ZOO_DIR": str(path), "SPARSEINFER_ZOO_GZIP": "0"}
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    yield path
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
