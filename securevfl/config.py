"""Run configuration: TOML files plus ``--set`` overrides, validated by pydantic.

Sections: ``data``, ``parties``, ``model``, ``train``, ``protection``, ``attack``,
``defense``, ``transport``. Unknown keys, wrong types and impossible combinations raise
:class:`~securevfl.errors.ConfigError` with a single readable line, which the CLI prints
before exiting with status 2.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from securevfl.attacks.base import AttackConfigBase, NoAttackConfig
from securevfl.attacks.registry import attack_keys, parse_attack_config
from securevfl.data import DataConfig, PartitionConfig
from securevfl.defenses.base import DefenseConfigBase, PlacementError
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.defenses.registry import parse_defense_config
from securevfl.errors import ConfigError
from securevfl.schemes import Scheme, default_preset, scheme_for
from securevfl.sections import ConfigSection, ModelConfig, ProtectionConfig, TrainConfig, TransportConfig, activation_masks_refusal

__all__ = [
    "ModelConfig",
    "ProtectionConfig",
    "RunConfig",
    "TrainConfig",
    "TransportConfig",
    "apply_override",
    "comparable_config",
    "describe_validation_error",
    "load_config",
    "validate_config",
]


def _defense_of_its_kind(raw: Any) -> DefenseConfigBase:
    """Validate one ``[[defense]]`` table against the registry as it is now (so registered defenses count)."""
    return raw if isinstance(raw, DefenseConfigBase) else parse_defense_config(raw)


class RunConfig(ConfigSection):
    """A whole run: data, parties, models, training, protection, attack and defenses.

    Build one from a TOML file with :func:`load_config`, from a dict with :func:`validate_config`,
    or directly. Every field is validated when set, and the combination is checked against the
    protection scheme (:attr:`scheme`): a model it cannot train or a defense placement it cannot
    carry is refused here, before any data is loaded.
    """

    data: DataConfig = Field(default_factory=DataConfig)
    parties: PartitionConfig = Field(default_factory=PartitionConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    protection: ProtectionConfig = Field(default_factory=lambda: ProtectionConfig(preset=default_preset("receiver")))
    attack: SerializeAsAny[AttackConfigBase] = Field(
        default_factory=NoAttackConfig, description="[attack] table; its kind selects the attack's own config"
    )
    defense: list[Annotated[SerializeAsAny[DefenseConfigBase], BeforeValidator(_defense_of_its_kind)]] = Field(
        default_factory=list, description="[[defense]] tables, applied in order; each kind's config validates its table"
    )
    transport: TransportConfig = Field(default_factory=TransportConfig)

    @field_validator("attack", mode="before")
    @classmethod
    def _attack_of_its_kind(cls, raw: Any) -> AttackConfigBase:
        return parse_attack_config(raw)

    @field_validator("protection", mode="before")
    @classmethod
    def _scheme_default_preset(cls, raw: Any) -> Any:
        """Fill in the scheme's default preset, so the resolved config names the preset it ran with."""
        if isinstance(raw, dict) and raw.get("preset") is None:
            return {**raw, "preset": default_preset(raw.get("key_holder", "receiver"))}
        if isinstance(raw, ProtectionConfig) and raw.preset is None:
            return raw.model_copy(update={"preset": default_preset(raw.key_holder)})
        return raw

    @property
    def scheme(self) -> Scheme:
        """The protection scheme object (everything scheme-dependent asks it)."""
        return scheme_for(self.protection)

    @model_validator(mode="after")
    def _check_model_for_scheme(self) -> RunConfig:
        self.scheme.check_model(self.model)
        self.scheme.check_train(self.train)
        return self

    @model_validator(mode="after")
    def _check_activation_masks(self) -> RunConfig:
        if self.protection.activation_masks == "pairwise":
            refusal = activation_masks_refusal(self.protection, self.model.top, self.parties.passive)
            if refusal is not None:
                raise ValueError(f"protection.activation_masks = 'pairwise': {refusal}")
        return self

    @model_validator(mode="after")
    def _check_defense_placements(self) -> RunConfig:
        for index, defense in enumerate(self.defense):
            try:
                DefensePipeline.build([defense], self.scheme, seed=0)
            except PlacementError as exc:
                raise ValueError(f"defense[{index}]: {exc}") from None
        return self

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration as JSON-ready data (paths as strings)."""
        return self.model_dump(mode="json")


def comparable_config(resolved: dict[str, Any]) -> dict[str, Any]:
    """A stored resolved config as this version resolves it, for checking that a run is the same run.

    Result and checkpoint files of earlier versions keep every attack kind's fields in
    ``[attack]``; validating them again keeps only the selected kind's, as a config resolves
    now. A stored config that no longer validates is compared as it is (and so differs).
    """
    try:
        return validate_config(copy.deepcopy(resolved)).resolved()
    except ConfigError:
        return resolved


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML file (or start from defaults), apply ``KEY=VALUE`` overrides, validate.

    Relative paths inside the file (``data.dir``) are taken relative to the current
    directory, exactly like the same path given with ``--set``.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for override in overrides:
        apply_override(raw, override)
    return validate_config(raw)


def validate_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a nested dict (TOML-shaped) into a :class:`RunConfig`; one-line :class:`ConfigError` otherwise."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply ``section.key=value``; the value is parsed as a TOML literal, else kept as a string."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key, got {override!r}")
    value = _parse_literal(text.strip())
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _parse_literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def describe_validation_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    if error["type"] == "extra_forbidden":
        return f"config error: unknown key '{location}'{_suggest(error['loc'])}{more}"
    given = error.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    message = error["msg"].removeprefix("Value error, ")
    prefix = f"{location}: " if location else ""
    return f"config error: {prefix}{message}{shown}{more}"


def _suggest(loc: tuple[Any, ...]) -> str:
    """'did you mean ...' for a misspelt key, looked up in the section's known fields."""
    if len(loc) == 2 and loc[0] == "attack":  # validated by the config of its kind: any attack's key
        known = attack_keys()
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; known keys: {', '.join(model.model_fields)}"
