"""Recipes: YAML text -> validated modifiers.

A recipe is a mapping with a ``modifiers`` list; every other top-level key is a scalar
variable that field values can reference as ``"$name"``::

    num_epochs: 12
    modifiers:
      - GMPruningModifier:
          params: ["re:.*conv[23]\\.weight", fc1.weight]
          init_sparsity: 0.05
          final_sparsity: 0.9
          start_epoch: 1
          end_epoch: 8
          update_frequency: 0.5
      - LearningRateModifier: {lr_func: cosine, init_lr: 0.01, start_epoch: 0, end_epoch: $num_epochs}

SparseML's tag style (``- !GMPruningModifier`` followed by the fields) is accepted too.
Errors are :class:`RecipeError` naming the field path (``modifiers[0].GMPruningModifier.x``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sparseinfer.sparsify.errors import RecipeError
from sparseinfer.sparsify.modifiers import REGISTRY, Modifier

_BUILTIN_DIR = Path(__file__).parent / "recipes"
_INTERNAL_FIELDS = {"path"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that turns ``!Name`` tagged mappings into ``{Name: mapping}``."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.MappingNode):
        return {suffix: loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.ScalarNode) and not loader.construct_scalar(node):
        return {suffix: {}}
    raise yaml.constructor.ConstructorError(None, None, f"!{suffix} must be followed by a mapping of fields",
                                            node.start_mark)


_Loader.add_multi_constructor("!", _tagged)


@dataclass
class Recipe:
    """Parsed recipe: its modifiers (in order) and variables."""

    modifiers: list[Modifier]
    variables: dict[str, Any]
    source: str = "<text>"

    @property
    def max_epochs(self) -> float:
        """The last epoch any modifier needs (the training length the recipe implies)."""
        return max((m.last_epoch for m in self.modifiers), default=0.0)

    def of_kind(self, kind: str) -> list[Modifier]:
        """The modifiers of one kind: ``pruning``, ``lr`` or ``other``."""
        return [m for m in self.modifiers if m.kind == kind]


def builtin_recipes() -> dict[str, Path]:
    """Recipes shipped with the package: name (file stem) -> path."""
    return {p.stem: p for p in sorted(_BUILTIN_DIR.glob("*.yaml"))}


def load_recipe(source: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Recipe:
    """Parses a recipe from a file path, a builtin recipe name (see :func:`builtin_recipes`)
    or YAML text (anything containing a newline or a ``:``). ``overrides`` replace the recipe's
    top-level variables (e.g. ``{"final_sparsity": 0.95}``)."""
    text, name = _read(source)
    return parse_recipe(text, name, overrides)


def _read(source: str | os.PathLike) -> tuple[str, str]:
    if isinstance(source, os.PathLike):
        return Path(source).read_text(), str(source)
    builtins = builtin_recipes()
    if source in builtins:
        return builtins[source].read_text(), f"builtin:{source}"
    if "\n" in source or ":" in source and not Path(source).exists():
        return source, "<text>"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {source!r} is neither a file nor a builtin recipe "
                                f"(builtins: {', '.join(builtins) or 'none'})")
    return path.read_text(), str(path)


def parse_recipe(text: str, source: str = "<text>", overrides: dict[str, Any] | None = None) -> Recipe:
    """Parses and validates recipe YAML text; raises :class:`RecipeError`. ``overrides``
    replace top-level variables; overriding a variable the recipe does not define is an error."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecipeError(source, f"not valid YAML: {exc}") from exc
    if isinstance(data, list):
        data = {"modifiers": data}
    if not isinstance(data, dict):
        raise RecipeError(source, f"expected a mapping with a 'modifiers' list, got {type(data).__name__}")
    if "modifiers" not in data:
        raise RecipeError(source, "missing the 'modifiers' list")
    variables = {k: v for k, v in data.items() if k != "modifiers"}
    for key, value in (overrides or {}).items():
        if key not in variables:
            raise RecipeError(str(key), f"cannot override: the recipe defines no variable {key!r}; "
                                        f"defined: {sorted(variables) or 'none'}")
        variables[key] = value
    for key, value in variables.items():
        if isinstance(value, (dict, list)):
            raise RecipeError(str(key), f"top-level keys other than 'modifiers' are scalar variables; "
                                        f"got a {type(value).__name__}")
    entries = data["modifiers"]
    if not isinstance(entries, list) or not entries:
        raise RecipeError("modifiers", "expected a non-empty list of modifiers")
    modifiers = [_build(entry, f"modifiers[{i}]", variables) for i, entry in enumerate(entries)]
    return Recipe(modifiers, variables, source)


def _build(entry: Any, path: str, variables: dict[str, Any]) -> Modifier:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise RecipeError(path, "expected a mapping with exactly one key, the modifier name "
                                "(e.g. '- GMPruningModifier: {final_sparsity: 0.9}')")
    (name, fields_), = entry.items()
    if name not in REGISTRY:
        raise RecipeError(path, f"unknown modifier {name!r}; expected one of {sorted(REGISTRY)}")
    path = f"{path}.{name}"
    fields_ = fields_ or {}
    if not isinstance(fields_, dict):
        raise RecipeError(path, f"expected a mapping of fields, got {type(fields_).__name__}")
    cls = REGISTRY[name]
    allowed = {f.name: f for f in dataclasses.fields(cls) if f.name not in _INTERNAL_FIELDS}
    kwargs = {}
    for key, value in fields_.items():
        if key not in allowed:
            raise RecipeError(f"{path}.{key}", f"unknown field for {name}; expected one of {sorted(allowed)}")
        value = _substitute(value, f"{path}.{key}", variables)
        kwargs[key] = _coerce(value, str(allowed[key].type), f"{path}.{key}")
    modifier = cls(**kwargs, path=path)
    modifier.validate()
    return modifier


def _substitute(value: Any, path: str, variables: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        if value[1:] not in variables:
            raise RecipeError(path, f"unknown variable {value!r}; defined: {sorted(variables) or 'none'}")
        return variables[value[1:]]
    return value


def _coerce(value: Any, annotation: str, path: str) -> Any:
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(path, f"expected a number, got {value!r}")
        return float(value)
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(path, f"expected an integer, got {value!r}")
        return value
    if annotation == "bool":
        if not isinstance(value, bool):
            raise RecipeError(path, f"expected true or false, got {value!r}")
        return value
    if annotation == "str":
        if not isinstance(value, str):
            raise RecipeError(path, f"expected a string, got {value!r}")
        return value
    if annotation == "list[str]":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecipeError(path, f"expected a list of strings, got {value!r}")
        return list(value)
    raise RecipeError(path, f"unsupported field type {annotation}")  # pragma: no cover - modifier bug
