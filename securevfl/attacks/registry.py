"""Which class implements each attack ``kind``, and everything derived from that one list.

Adding an attack: one module with its config and class, its test, and one line in
:data:`BUILT_IN` (or :func:`register_attack` from outside the package). The ``[attack]`` table
is validated by the config of its ``kind``; the metric names training, result records and the
study's tables use come from :func:`attack_metrics`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from securevfl.attacks.activation_inversion import ActivationInversion
from securevfl.attacks.backdoor_control import BackdoorControl
from securevfl.attacks.base import Attack, AttackConfigBase, NoAttackConfig
from securevfl.attacks.flooding_size import ActiveFloodingKeyRecovery, FloodingKeyRecovery
from securevfl.attacks.own_slot import ActiveOwnSlot
from securevfl.attacks.gradient_inversion import GradientInversion
from securevfl.attacks.gradient_replacement import GradientReplacement
from securevfl.attacks.gradient_steering import GradientSteering
from securevfl.attacks.key_recovery import ActiveKeyRecovery, KeyRecovery
from securevfl.attacks.row_request import RowRequest
from securevfl.attacks.label_inference import LabelInference
from securevfl.attacks.metrics import MetricSpec

__all__ = [
    "ATTACKS",
    "BUILT_IN",
    "attack_class",
    "attack_kinds",
    "attack_metrics",
    "attack_table_columns",
    "parse_attack_config",
    "register_attack",
    "success_metric",
    "unregister_attack",
]

#: The attacks that ship with securevfl, one line each.
BUILT_IN: tuple[type[Attack], ...] = (
    GradientReplacement,
    LabelInference,
    GradientInversion,
    KeyRecovery,
    ActiveKeyRecovery,
    FloodingKeyRecovery,
    ActiveFloodingKeyRecovery,
    ActiveOwnSlot,
    GradientSteering,
    RowRequest,
    ActivationInversion,
    BackdoorControl,
)

ATTACKS: dict[str, type[Attack]] = {}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Add an attack class (usable as a decorator), after checking it fits the others.

    Its ``name`` must be its config's ``kind``; its ``success_metric`` one of its own metrics; a
    metric name another attack declared must mean the same thing (same spec); its table columns
    must not be another attack's with another field.
    """
    if cls.name in ATTACKS or cls.name == "none":
        raise ValueError(f"an attack of kind {cls.name!r} is already registered")
    _check_fits(cls, ATTACKS.values())
    ATTACKS[cls.name] = cls
    return cls


def _check_fits(cls: type[Attack], others: Iterable[type[Attack]]) -> None:
    kind = cls.config_type.model_fields["kind"].default
    if cls.name != kind:
        raise ValueError(f"attack class {cls.__name__} is named {cls.name!r} but its config's kind is {kind!r}")
    if cls.success_metric is not None and cls.success_metric not in {spec.name for spec in cls.metrics}:
        raise ValueError(f"attack {cls.name!r}: success_metric {cls.success_metric!r} is not one of its metrics")
    for other in others:
        known = {spec.name: spec for spec in other.metrics}
        for spec in cls.metrics:
            if spec.name in known and known[spec.name] != spec:
                raise ValueError(f"attack {cls.name!r} declares metric {spec.name!r} differently from {other.name!r}")
        for column, field in cls.config_type.table_columns.items():
            if other.config_type.table_columns.get(column, field) != field:
                raise ValueError(f"attack {cls.name!r}: table column {column!r} is {other.name!r}'s with another field")


for _built_in in BUILT_IN:
    register_attack(_built_in)


def unregister_attack(kind: str) -> None:
    """Remove an attack registered with :func:`register_attack` (built-in ones stay)."""
    if kind in {cls.name for cls in BUILT_IN}:
        raise ValueError(f"{kind!r} is a built-in attack")
    ATTACKS.pop(kind, None)


def attack_kinds() -> list[str]:
    return ["none", *ATTACKS]


def attack_class(kind: str) -> type[Attack]:
    """The class of attack ``kind``; ``KeyError`` naming the known kinds otherwise."""
    try:
        return ATTACKS[kind]
    except KeyError:
        raise KeyError(f"unknown attack kind {kind!r} (known: {', '.join(attack_kinds())})") from None


def _config_types() -> list[type[AttackConfigBase]]:
    return [NoAttackConfig, *(cls.config_type for cls in ATTACKS.values())]


def attack_keys() -> list[str]:
    """Every key some attack's config knows (a key of another kind is ignored, not refused)."""
    return list(dict.fromkeys(name for config in _config_types() for name in config.model_fields))


def parse_attack_config(raw: Any) -> AttackConfigBase:
    """Validate an ``[attack]`` table into the config of its ``kind``.

    Keys that belong to another kind's config are dropped, so a study can sweep ``kind`` from
    one base configuration; keys no attack knows are refused (pydantic ``extra_forbidden``).

    Raises:
        ValueError: unknown ``kind``.
        pydantic.ValidationError: unknown keys or invalid values.
    """
    if isinstance(raw, AttackConfigBase):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"the [attack] section must be a table, got {type(raw).__name__}")
    kind = raw.get("kind", "none")
    config_type: type[AttackConfigBase] = NoAttackConfig
    if kind != "none":
        if kind not in ATTACKS:
            close = difflib.get_close_matches(str(kind), attack_kinds(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown attack kind {kind!r} (known: {', '.join(attack_kinds())}){hint}")
        config_type = ATTACKS[kind].config_type
    others = set(attack_keys()) - set(config_type.model_fields)
    return config_type.model_validate({key: value for key, value in raw.items() if key not in others})


def attack_metrics() -> list[MetricSpec]:
    """Every registered attack's metrics, in registry order, each name once."""
    specs: dict[str, MetricSpec] = {}
    for cls in ATTACKS.values():
        for spec in cls.metrics:
            specs.setdefault(spec.name, spec)
    return list(specs.values())


def success_metric(kind: str) -> str | None:
    """The metric that measures how well attack ``kind`` succeeded (None for ``none``/unknown)."""
    cls = ATTACKS.get(kind)
    return None if cls is None else cls.success_metric


def attack_table_columns() -> dict[str, str]:
    """Every registered attack config's study-table knob columns (column -> config field)."""
    columns: dict[str, str] = {}
    for cls in ATTACKS.values():
        columns.update(cls.config_type.table_columns)
    return columns
