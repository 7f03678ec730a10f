"""Parsing ``zoo:NAME[-VARIANT]`` stubs (default variant ``dense``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sparseinfer.errors import SparseInferError
from sparseinfer.zoo import registry

PREFIX = "zoo:"


class ZooError(SparseInferError, ValueError):
    """A bad zoo stub or a zoo model that cannot be built; the message lists what exists."""


@dataclass(frozen=True)
class Stub:
    """A parsed stub: the registry entry and the variant."""

    entry: registry.ZooEntry
    variant: str

    @property
    def name(self) -> str:
        return self.entry.name

    def __str__(self) -> str:
        return f"{PREFIX}{self.entry.name}-{self.variant}"


def available() -> str:
    """``"available: a, b, ...; variants: dense, ..."`` for error messages."""
    return f"available: {', '.join(registry.names())}; variants: {', '.join(registry.VARIANTS)}"


def is_stub(model: object) -> bool:
    """True for strings starting with ``zoo:``."""
    return isinstance(model, str) and model.startswith(PREFIX)


def parse(stub: str, variant: str | None = None) -> Stub:
    """Parses ``zoo:NAME[-VARIANT]`` (the ``zoo:`` prefix is optional here). ``variant``, when
    given, overrides a variant in the stub. Raises :class:`ZooError` listing what exists."""
    if isinstance(stub, os.PathLike) or not isinstance(stub, str):
        raise ZooError(f"expected a zoo stub string like 'zoo:resnet50-pruned90', got {stub!r}; {available()}")
    text = stub[len(PREFIX):] if stub.startswith(PREFIX) else stub
    text = text.strip()
    if not text:
        raise ZooError(f"empty zoo stub {stub!r}: expected zoo:NAME[-VARIANT]; {available()}")
    entry, rest = None, None
    for name in sorted(registry.names(), key=len, reverse=True):  # longest name first
        if text == name:
            entry, rest = registry.get(name), None
            break
        if text.startswith(name + "-"):
            entry, rest = registry.get(name), text[len(name) + 1:]
            break
    if entry is None:
        shown = text.split("-")[0] if "-" in text and not registry.get(text) else text
        raise ZooError(f"unknown zoo model {shown!r} (in stub {stub!r}); {available()}")
    chosen = variant if variant is not None else (rest if rest is not None else "dense")
    if rest is not None and variant is not None and rest != variant:
        raise ZooError(f"stub {stub!r} names variant {rest!r} but variant={variant!r} was also given")
    if chosen not in registry.VARIANTS:
        raise ZooError(f"unknown variant {chosen!r} of zoo model {entry.name!r} (in stub {stub!r}); "
                       f"variants: {', '.join(registry.VARIANTS)}; {available()}")
    return Stub(entry, chosen)
