"""What every party of a run must hold alike, as one digest each attempt's handshake compares (protocols/attempt.py).

Each party checks only its own entry of a plan, so copies that differ elsewhere (a key holder told ``flooding_bits =
0`` while the passives' copies say 30, or another roster) ran together unnoticed until a red-team pass showed it
(2026-11-27). :meth:`securevfl.plan.Plan.agreement` digests a whole plan; :func:`config_agreement` the run
configuration alone, for parties started without a plan (``securevfl.party_runner.run_party`` on channels built by
hand). Local paths are left out: each party may keep its files elsewhere.
"""

from __future__ import annotations

import enum
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = ["config_agreement", "digest_of", "shared_content"]


def shared_content(value: Any) -> Any:
    """``value`` as JSON-ready data with every path as null (each party may keep its files elsewhere), without excluded fields."""
    if isinstance(value, BaseModel):
        return {name: shared_content(getattr(value, name)) for name, field in type(value).model_fields.items() if not field.exclude}
    if isinstance(value, (list, tuple)):
        return [shared_content(item) for item in value]
    if isinstance(value, dict):
        return {str(key): shared_content(item) for key, item in value.items()}
    if isinstance(value, enum.Enum):
        return shared_content(value.value)
    if isinstance(value, Path):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def digest_of(domain: str, value: Any, *extra: bytes) -> str:
    """SHA-256 (hex) of ``value``'s :func:`shared_content` under ``domain``, then ``extra`` bytes (length-prefixed)."""
    digest = hashlib.sha256(domain.encode() + b"\x00")
    digest.update(json.dumps(shared_content(value), sort_keys=True, separators=(",", ":")).encode())
    for part in extra:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def config_agreement(config: BaseModel) -> str:
    """The digest of a run configuration every party must hold alike (protection settings, model, training, attack)."""
    return digest_of("securevfl run configuration agreement v1", config)
