"""Zoo test fixtures: one export per stub per session (the cache dir is tests/conftest.py's)."""

from __future__ import annotations


import pytest


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
