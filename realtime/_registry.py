"""Registries of generator entrypoints and checkpoint-adapting families (timm's ``register_model`` pattern).

Adding a family is one file in ``realtime/models/`` that ends with ``register_family(...)`` and one
``@register_generator`` entrypoint per preset, plus one import line in ``realtime/models/__init__.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from .models._base import Generator


@dataclass(frozen=True)
class Family:
    """A generator family and how to recognise and import its checkpoints.

    Attributes:
        name: Family id stored in checkpoint configs (e.g. ``"cut-resnet"``).
        model_cls: The ``Generator`` subclass; constructed as ``model_cls(config=config_cls(**fields))``.
        config_cls: Frozen dataclass holding the architecture and runtime settings.
        checkpoint_filter_fn: ``(state_dict) -> (config, state_dict) | None``: detects the layout from sentinel keys,
            infers the config, renames keys to ours and checks coverage. ``None`` means "not this family".
        layouts: ``{layout name: expected key set}`` used to name the closest layout when nothing matches.
    """

    name: str
    model_cls: type[Generator]
    config_cls: type
    checkpoint_filter_fn: Callable[[Mapping[str, torch.Tensor]], "tuple[Any, dict[str, torch.Tensor]] | None"]
    layouts: Callable[[], dict[str, set[str]]]

    def build(self, config: Any) -> Generator:
        return self.model_cls(config=config)

    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config keys {unknown} are not known to family {self.name!r}; allowed: {sorted(known)}")
        return self.config_cls(**data)


@dataclass(frozen=True)
class GeneratorEntry:
    name: str
    family: str
    defaults: Mapping[str, Any]
    description: str


_FAMILIES: dict[str, Family] = {}
_GENERATORS: dict[str, GeneratorEntry] = {}


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES:
        raise RuntimeError(f"generator family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def register_generator(*, name: str, family: str, description: str, **defaults: Any) -> GeneratorEntry:
    """Register a named preset: a family plus config defaults (the user's ``**config`` overrides them)."""
    if name in _GENERATORS:
        raise RuntimeError(f"generator {name!r} registered twice")
    entry = GeneratorEntry(name=name, family=family, defaults=dict(defaults), description=description)
    _GENERATORS[name] = entry
    return entry


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown generator family {name!r}; known: {sorted(_FAMILIES)}") from None


def families() -> list[Family]:
    return list(_FAMILIES.values())


def get_entry(name: str) -> GeneratorEntry:
    try:
        return _GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; available: {', '.join(list_generators())}") from None


def list_generators() -> list[str]:
    """Names accepted by :func:`create_generator`."""
    return sorted(_GENERATORS)


def create_generator(name: str, **config: Any) -> Generator:
    """A randomly initialised generator of preset ``name``; ``config`` overrides the preset's fields.

    Example: ``create_generator("nijigan", solver="rk4:1")``.
    """
    entry = get_entry(name)
    family = get_family(entry.family)
    model = family.build(family.config_from_dict({**entry.defaults, **config}))
    model.preset = name
    return model
