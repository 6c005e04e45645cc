"""TOML text for the files securevfl writes (plans, party files): tables, arrays of tables, scalars.

The standard library reads TOML but does not write it, and what we write is simple: nested
tables of strings, numbers, booleans and lists. ``None`` has no TOML form, so a key whose value is
None is left out (a reader then takes the field's default, which callers check round-trips).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]


def dumps(document: Mapping[str, Any]) -> str:
    """The TOML text of ``document`` (a mapping of tables, arrays of tables and values)."""
    lines: list[str] = []
    _table(lines, document, ())
    return "\n".join(lines).strip() + "\n"


def _table(lines: list[str], table: Mapping[str, Any], path: tuple[str, ...]) -> None:
    scalars = {key: value for key, value in table.items() if value is not None and not _is_table(value) and not _is_table_array(value)}
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if _is_table(value):
            lines += ["", f"[{'.'.join(_key(part) for part in (*path, key))}]"]
            _table(lines, value, (*path, key))
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{'.'.join(_key(part) for part in (*path, key))}]]"]
                _table(lines, item, (*path, key))


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(item, Mapping) for item in value)


def _key(key: str) -> str:
    return key if key and all(char.isalnum() or char in "_-" for char in key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        if any(item is None for item in value):
            raise ValueError("TOML has no null: a list cannot hold None")
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")
