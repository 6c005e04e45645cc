"""The one list of defenses, and everything derived from it.

:data:`BUILT_IN` names each defense class once. From it come :data:`DEFENSES` (``kind`` ->
class), the :data:`DefenseConfig` union that run configurations use for their ``[[defense]]``
tables (each class contributes its ``config_type``, discriminated by ``kind``),
:func:`parse_defense_config` and :func:`build_defense`. Nothing else in the package lists the
defenses, so adding one is: a module holding its config and class, its test, and one line in
:data:`BUILT_IN` (plus the import of the class).

:func:`register_defense` adds a defense from outside the package at run time (a plug-in, or a
test): :func:`parse_defense_config`, :func:`build_defense` and :func:`defense_class` see it at
once. :data:`DefenseConfig`, however, is a type fixed at import, so models already declared with
it (``RunConfig``) accept only the built-in kinds.
"""

from __future__ import annotations

import inspect
import typing
from functools import lru_cache
from typing import Annotated, Any, Union

import numpy as np
from pydantic import Field, TypeAdapter

from securevfl.defenses.base import Defense, DefenseConfigBase
from securevfl.defenses.clipping import NormClipping
from securevfl.defenses.label_dp import LabelDP
from securevfl.defenses.noise import GaussianNoise, LaplaceNoise
from securevfl.defenses.sparsification import Sparsification

__all__ = [
    "BUILT_IN",
    "DEFENSES",
    "DefenseConfig",
    "build_defense",
    "config_union",
    "defense_class",
    "parse_defense_config",
    "register_defense",
]

BUILT_IN: tuple[type[Defense], ...] = (
    GaussianNoise,
    LaplaceNoise,
    Sparsification,
    NormClipping,
    LabelDP,
)
"""Every defense of the package, one line each, in the order they are documented."""

DEFENSES: dict[str, type[Defense]] = {}
"""``kind`` -> defense class, for every registered defense (filled by :func:`register_defense`)."""


def register_defense(cls: type[Defense]) -> type[Defense]:
    """Make ``cls`` a defense that configurations can select by its ``name``; returns ``cls``.

    Checked here, once, rather than when a configuration first names it: ``cls`` is a concrete
    :class:`~securevfl.defenses.base.Defense`, its ``config_type`` derives from
    :class:`~securevfl.defenses.base.DefenseConfigBase` with ``kind`` fixed to ``cls.name``,
    and no other class has that name. Registering the same class again does nothing.

    Raises:
        TypeError: ``cls`` or its config do not have that shape.
        ValueError: another class is registered under the same ``kind``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Defense)) or inspect.isabstract(cls):
        raise TypeError(f"a registered defense must be a concrete Defense subclass, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must set its own `name` (the `kind` its config selects)")
    config_type = getattr(cls, "config_type", None)
    if not (isinstance(config_type, type) and issubclass(config_type, DefenseConfigBase)):
        raise TypeError(f"{cls.__name__}.config_type must be a DefenseConfigBase subclass, got {config_type!r}")
    kind = config_type.model_fields["kind"]
    if typing.get_args(kind.annotation) != (name,) or kind.default != name:
        raise TypeError(
            f"{config_type.__name__}.kind must be Literal[{name!r}] with default {name!r} to select {cls.__name__}"
        )
    known = DEFENSES.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"defense kind {name!r} is already registered to {known.__name__}")
    DEFENSES[name] = cls
    return cls


for _cls in BUILT_IN:
    register_defense(_cls)
del _cls


def config_union(defenses: tuple[type[Defense], ...] | None = None) -> Any:
    """The discriminated union of the configs of ``defenses`` (default: every registered one).

    Typed ``Any`` because the union is built at run time; pydantic reads it like a written one.
    """
    classes = tuple(DEFENSES.values()) if defenses is None else defenses
    configs = tuple(cls.config_type for cls in classes)
    if len(configs) == 1:  # Union of one type is that type, which cannot carry a discriminator
        return configs[0]
    return Annotated[Union[configs], Field(discriminator="kind")]  # noqa: UP007 - a runtime tuple of types


DefenseConfig: Any = config_union(BUILT_IN)
"""Any built-in defense configuration; the ``kind`` key selects the model."""


@lru_cache(maxsize=8)
def _adapter(defenses: tuple[type[Defense], ...]) -> TypeAdapter[Any]:
    """A validator for the configs of ``defenses``, rebuilt only when the registry changes."""
    return TypeAdapter(config_union(defenses))


def defense_class(kind: str) -> type[Defense]:
    """The class of defense ``kind``; ``KeyError`` naming the known kinds otherwise."""
    try:
        return DEFENSES[kind]
    except KeyError:
        raise KeyError(f"unknown defense kind {kind!r} (known: {', '.join(sorted(DEFENSES))})") from None


def parse_defense_config(data: Any) -> DefenseConfigBase:
    """Validate a mapping (e.g. a TOML table) into the configuration its ``kind`` names.

    Raises:
        pydantic.ValidationError: unknown ``kind``, unknown keys, or invalid values.
    """
    config: DefenseConfigBase = _adapter(tuple(DEFENSES.values())).validate_python(data)
    return config


def build_defense(config: DefenseConfigBase, rng: np.random.Generator, *, preset_depth: int | None = None) -> Defense:
    """Instantiate the defense ``config`` describes.

    Args:
        config: a validated configuration.
        rng: the defense's own random generator.
        preset_depth: when given, also check ``config.placement`` against it (multiplicative
            levels available to the defense), raising
            :class:`~securevfl.defenses.base.PlacementError` at build time.
    """
    defense = defense_class(config.kind)(config, rng)
    if preset_depth is not None:
        defense.check_placement(config.placement, preset_depth=preset_depth)
    return defense
