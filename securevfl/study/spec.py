"""What a study asks for, and its expansion into runs.

A study file (TOML) names a base run config, settings shared by every run, and one or more
``[[grid]]`` blocks. Each grid is a Cartesian product of

- ``schemes``: protection labels (``plain``, ``ckks/receiver``, ``ckks/active/compute`` ...);
- ``variants``: named bundles of settings (``clean = {"attack.kind" = "none"}``), for levels
  that differ in several keys at once (a trainable top, an attack plus a defense);
- ``axes``: any config key (dotted, list items by index: ``defense.0.variance``) with a list
  of values;

repeated over ``seeds``. Every run is a complete config, validated before anything trains:
a misspelt key stops the study at once, while a placement the scheme cannot carry (noise
under encryption in plaintext, say) becomes a *refused* run whose reason the report shows —
that refusal is itself a finding of the study.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from securevfl.config import RunConfig, validate_config
from securevfl.defenses.registry import parse_defense_config
from securevfl.errors import ConfigError
from securevfl.schemes import protection_from_label

__all__ = ["GridSpec", "PlannedRun", "StudySpec", "load_study", "plan_runs", "scheme_overrides"]

#: Settings every study run gets: workers show one progress display, not one bar per run.
FORCED = {"train.progress": False}


def scheme_overrides(label: str) -> dict[str, Any]:
    """``plain`` | ``ckks/<key_holder>[/<preset>]`` as protection settings (see :mod:`securevfl.schemes`)."""
    try:
        return protection_from_label(label)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables and dotted keys alike become ``{"a.b.c": value}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested config data; numeric parts index into lists (``defense.0.variance``)."""
    parts = path.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"study: bad key {path!r}")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"study: {where!r}: the list has {len(node)} item(s); set the whole list first")
            if last:
                node[int(part)] = copy.deepcopy(value)
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"study: {where!r}: {parts[depth - 1]!r} is a value, not a section")
        if last:
            node[part] = copy.deepcopy(value)
        else:
            node = node.setdefault(part, {})


class GridSpec(BaseModel):
    """One ``[[grid]]``: a product of schemes x variants x axes, repeated over seeds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    title: str = ""
    description: str = ""
    schemes: list[str] | None = None
    seeds: list[int] | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    x: str | None = Field(default=None, description="an axis to plot last-epoch accuracies against")
    log_x: bool | None = Field(default=None, description="default: log scale when the values span >= 100x")

    @model_validator(mode="after")
    def _check(self) -> GridSpec:
        for key, values in self.axes.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
        if self.x is not None and self.x not in self.axes:
            raise ValueError(f"x = {self.x!r} is not one of the grid's axes {sorted(self.axes)}")
        return self


class StudySpec(BaseModel):
    """The ``[study]`` table plus the grids."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: str | None = Field(default=None, description="run config TOML, relative to the study file")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    schemes: list[str] = Field(default_factory=lambda: ["plain"], min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    plugins: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]] = Field(
        default_factory=list,
        description="importable modules that register attacks or defenses; imported here and in every worker",
    )
    summary_epochs: int = Field(
        default=1,
        ge=1,
        description="report each run's accuracies as the mean over its last N epochs (1: the last epoch). Why: a "
        "run whose main accuracy oscillates between epochs (an attack whose loss keeps growing) would otherwise "
        "be judged on one draw of that oscillation",
    )
    grids: list[GridSpec] = Field(min_length=1)
    #: filled by load_study: the base config's data and the study file's own text
    base_raw: dict[str, Any] = Field(default_factory=dict, exclude=True)
    source: str = ""

    @model_validator(mode="after")
    def _unique_grids(self) -> StudySpec:
        names = [grid.name for grid in self.grids]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"grid names must be unique: {duplicated}")
        return self


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import the modules a study names, so the attacks and defenses they register exist here.

    Spawned workers start with the built-in registries only; the runner calls this in each of
    them too. Only importable module names are accepted (never a path to run).
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"study plugin {module!r} cannot be imported: {exc}") from None


def load_study(path: Path, extra_set: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """Read and validate a study file; ``extra_set`` (``KEY=VALUE``) applies to every run."""
    if not path.is_file():
        raise ConfigError(f"study file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - {"study", "grid"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level table(s) {unknown}; expected [study] and [[grid]]")
    data = {**raw.get("study", {}), "grids": raw.get("grid", [])}
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"{path}: study error at '{where}': {error['msg']}") from None
    import_plugins(spec.plugins)
    base_raw: dict[str, Any] = {}
    if spec.base is not None:
        base_path = (path.parent / spec.base).resolve()
        if not base_path.is_file():
            raise ConfigError(f"{path}: base config not found: {base_path}")
        base_raw = tomllib.loads(base_path.read_text(encoding="utf-8"))
    for override in extra_set:
        key, sep, value = override.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {override!r}")
        spec.set[key.strip()] = _literal(value.strip())
    spec.base_raw = base_raw
    spec.source = text
    for label in spec.schemes + [s for grid in spec.grids for s in grid.schemes or []]:
        scheme_overrides(label)
    return spec


def _literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


@dataclass(frozen=True)
class PlannedRun:
    """One training run of the study: where it lives, what it trains, why it may not."""

    run_id: str
    grid: str
    cell: str
    seed: int
    levels: dict[str, str]  # axis name -> level label ("scheme", "variant", config keys)
    values: dict[str, Any]  # axis name -> raw value (numbers stay numbers, for plots)
    config: dict[str, Any] = field(repr=False)  # the resolved run config (empty when refused)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)  # what is validated and trained
    refused: str | None = None


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "-", text).strip("-")


def plan_runs(spec: StudySpec) -> list[PlannedRun]:
    """Every run of every grid, in file order; configs validated (unknown keys are fatal)."""
    runs: list[PlannedRun] = []
    for grid in spec.grids:
        dims: list[tuple[str, list[tuple[str, Any, dict[str, Any]]]]] = []
        schemes = grid.schemes or spec.schemes
        dims.append(("scheme", [(label, label, scheme_overrides(label)) for label in schemes]))
        if grid.variants:
            dims.append(("variant", [(label, label, flatten(settings)) for label, settings in grid.variants.items()]))
        for key, axis_values in grid.axes.items():
            dims.append((key, [(_label(value), value, {key: value}) for value in axis_values]))
        for combo in itertools.product(*(levels for _, levels in dims)):
            levels = {name: level[0] for (name, _), level in zip(dims, combo, strict=True)}
            values = {name: level[1] for (name, _), level in zip(dims, combo, strict=True)}
            cell = "__".join(_slug(f"{name}={label}" if name not in ("scheme", "variant") else label) for name, label in levels.items())
            for seed in grid.seeds or spec.seeds:
                raw = copy.deepcopy(spec.base_raw)
                settings = [flatten(spec.set), flatten(grid.set)] + [level[2] for level in combo]
                settings.append({**FORCED, "train.seed": seed})
                for layer in settings:
                    for path, value in layer.items():
                        set_path(raw, path, value)
                config, refused = _validate(raw, f"{grid.name}/{cell}")
                runs.append(
                    PlannedRun(
                        run_id=f"{grid.name}/{cell}__seed{seed}",
                        grid=grid.name,
                        cell=cell,
                        seed=seed,
                        levels=levels,
                        values=values,
                        config=config,
                        raw=raw,
                        refused=refused,
                    )
                )
    ids = [run.run_id for run in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError("study: two runs share a name; give axis levels distinct labels")
    return runs


def _validate(raw: dict[str, Any], where: str) -> tuple[dict[str, Any], str | None]:
    """Resolved config, or the reason a cross-section rule refuses it (other errors are fatal).

    Only errors raised by the whole-config checks (location empty: a defense placement the
    scheme cannot carry, a model the preset cannot backpropagate) make a refused run; a bad
    value or a misspelt key in one section is a mistake in the study file and stops it. A
    refused run still gets a resolved config (checked without its defenses, which are
    resolved one by one), so the table can say what was refused.
    """
    try:
        return RunConfig.model_validate(raw).resolved(), None
    except ValidationError as exc:
        errors = exc.errors()
        if all(error["type"] == "value_error" and not error["loc"] for error in errors):
            reason = "; ".join(error["msg"].removeprefix("Value error, ") for error in errors)
            return _resolve_refused(raw), reason
        try:
            validate_config(raw)
        except ConfigError as described:
            raise ConfigError(f"study cell {where}: {described}") from None
        raise  # pragma: no cover - validate_config raises on the same data


def _resolve_refused(raw: dict[str, Any]) -> dict[str, Any]:
    without_defenses = {key: value for key, value in raw.items() if key != "defense"}
    try:
        resolved = RunConfig.model_validate(without_defenses).resolved()
    except ValidationError:
        return {}
    resolved["defense"] = [parse_defense_config(item).model_dump(mode="json") for item in raw.get("defense", [])]
    return resolved
