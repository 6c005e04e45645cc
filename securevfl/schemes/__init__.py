"""Protection schemes: one object per scheme, asked by everything that depends on protection.

:func:`scheme_for` maps a ``[protection]`` section to its scheme object; :func:`protection_from_label`
turns a table label (``plain``, ``ckks/receiver``, ``ckks/active/compute``) back into protection
settings. Adding a scheme: one module with a :class:`~securevfl.schemes.base.Scheme` subclass and
one line in :func:`scheme_for`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from securevfl.schemes.base import Capability, Role, Scheme, SchemeCapabilities
from securevfl.schemes.label_private import LabelPrivateScheme
from securevfl.schemes.open import PlainScheme, ReceiverKeyScheme

if TYPE_CHECKING:
    from securevfl.sections import ProtectionConfig

__all__ = [
    "Capability",
    "LabelPrivateScheme",
    "PlainScheme",
    "ReceiverKeyScheme",
    "Role",
    "Scheme",
    "SchemeCapabilities",
    "default_preset",
    "protection_from_label",
    "scheme_class",
    "scheme_for",
]


def scheme_class(scheme: str, key_holder: str) -> type[Scheme]:
    """Which scheme ``protection.scheme`` / ``protection.key_holder`` select (key_holder ignored by plain)."""
    if scheme == "plain":
        return PlainScheme
    if key_holder == "receiver":
        return ReceiverKeyScheme
    return LabelPrivateScheme


def scheme_for(protection: ProtectionConfig) -> Scheme:
    """The scheme object of a validated ``[protection]`` section."""
    return scheme_class(protection.scheme, protection.key_holder)(protection)


def default_preset(key_holder: str) -> str:
    """The CKKS preset of ``key_holder``'s scheme when the config names none.

    Recorded even under ``scheme = "plain"`` (which ignores it), so a study that sweeps
    ``protection.scheme`` from one base config resolves the same preset in every cell.
    """
    return scheme_class("ckks", key_holder).default_preset


def protection_from_label(label: str) -> dict[str, Any]:
    """``plain`` | ``ckks/<key_holder>[/<preset>]`` as ``protection.*`` settings.

    Raises:
        ValueError: the label names no scheme.
    """
    parts = label.split("/")
    if parts == ["plain"]:
        return {"protection.scheme": "plain"}
    if parts[0] == "ckks" and len(parts) in (2, 3):
        overrides: dict[str, Any] = {"protection.scheme": "ckks", "protection.key_holder": parts[1]}
        if len(parts) == 3:
            overrides["protection.preset"] = parts[2]
        return overrides
    raise ValueError(f"scheme {label!r}: expected 'plain' or 'ckks/<key_holder>[/<preset>]'")
