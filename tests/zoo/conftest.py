"""Zoo test fixtures: a session-wide temporary cache (tests never write to the user's home) and
one export per stub per session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def zoo_cache_dir(tmp_path_factory):
    """Points SPARSEINFER_ZOO_DIR at a session temp dir for the whole test session."""
    path = tmp_path_factory.mktemp("zoo_cache")
    old = os.environ.get("SPARSEINFER_ZOO_DIR")
    os.environ["SPARSEINFER_ZOO_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SPARSEINFER_ZOO_DIR", None)
    else:
        os.environ["SPARSEINFER_ZOO_DIR"] = old


@pytest.fixture(scope="session")
def zoo_export(zoo_cache_dir):
    """``zoo_export("zoo:NAME-VARIANT") -> ZooModel``, exported once per session."""
    from sparseinfer import zoo

    done: dict[str, object] = {}

    def get(stub: str):
        key = str(zoo.parse(stub))
        if key not in done:
            done[key] = zoo.export(key)
        return done[key]

    return get
