"""Run configuration: TOML files plus ``--set`` overrides, validated by pydantic.

Sections: ``data``, ``parties``, ``model``, ``train``, ``protection``, ``attack``,
``defense``. Unknown keys, wrong types and impossible combinations raise
:class:`~securevfl.errors.ConfigError` with a single readable line, which the CLI prints
before exiting with status 2.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from securevfl.attacks.base import AttackConfigBase, NoAttackConfig
from securevfl.attacks.registry import attack_keys, parse_attack_config
from securevfl.data import DataConfig, PartitionConfig
from securevfl.defenses.base import DefenseConfigBase, PlacementError
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.defenses.registry import parse_defense_config
from securevfl.errors import ConfigError
from securevfl.schemes import Scheme, default_preset, scheme_for


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Bottom models (one per passive party) and the active party's top model.

    Bottom models are Linear+ReLU stacks. ``top = "sum"`` is the paper's non-trainable top
    (sum the bottom outputs, softmax): every bottom output then has one unit per class.
    ``top = "trainable"`` concatenates the bottom outputs and applies dense layers.
    """

    top: Literal["sum", "trainable"] = "sum"
    bottom_hidden: list[int] = Field(default_factory=lambda: [32])
    bottom_output: int | None = Field(
        default=None, description="width of each bottom output; default classes (sum) or 32"
    )
    bottom_output_activation: Literal["none", "relu"] | None = Field(
        default=None, description="default 'none' for the sum top (logits), 'relu' for trainable"
    )
    top_hidden: list[int] = Field(default_factory=lambda: [32])

    @model_validator(mode="after")
    def _check_widths(self) -> ModelConfig:
        for name in ("bottom_hidden", "top_hidden"):
            if any(width < 1 for width in getattr(self, name)):
                raise ValueError(f"{name} widths must be positive, got {getattr(self, name)}")
        if self.bottom_output is not None and self.bottom_output < 1:
            raise ValueError(f"bottom_output must be positive, got {self.bottom_output}")
        if self.top == "sum" and "top_hidden" in self.model_fields_set:
            raise ValueError("top_hidden applies only to top = 'trainable'; the sum top has no layers")
        return self

    def resolved_bottom_output(self, num_classes: int) -> int:
        if self.top == "sum":
            return num_classes if self.bottom_output is None else self.bottom_output
        return 32 if self.bottom_output is None else self.bottom_output

    def resolved_output_activation(self) -> Literal["none", "relu"]:
        if self.bottom_output_activation is not None:
            return self.bottom_output_activation
        return "none" if self.top == "sum" else "relu"


class TrainConfig(_Section):
    """SGD training; defaults follow the seed paper (lr 0.01, batch 64, plain SGD)."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = Field(default=0, ge=0)
    eval_batch_size: int = Field(default=1024, ge=1)
    progress: bool = True
    checkpoint: bool = True
    threads: int = Field(default=1, ge=1, description="torch intra-op threads per process")


class ProtectionConfig(_Section):
    """How messages are protected on the wire, and who holds the CKKS secret key.

    ``plain``: arrays as they are. ``ckks`` with ``key_holder``:

    - ``receiver``: every party has its own key pair; each message is encrypted under the
      public key of the party that receives it.
    - ``active``: only the active party holds a key. Passives encrypt their activations under
      it and train from encrypted gradients (label-private: no passive ever holds a plaintext
      per-sample gradient); the active party decrypts only combined activations.
    - ``coordinator``: as ``active``, but a coordinator holds the key and only ever decrypts
      values hidden by random masks.

    ``key_holder``, ``preset`` and the bounds are ignored by the plain scheme, so a study can
    sweep ``scheme`` over plain and ckks from one base config.
    """

    scheme: Literal["plain", "ckks"] = "plain"
    key_holder: Literal["receiver", "active", "coordinator"] = "receiver"
    preset: str = Field(default="transport", description="default: transport (receiver), compute (active, coordinator)")
    activation_bound: float = Field(default=64.0, gt=0, description="public bound on |activation| values")
    gradient_bound: float = Field(default=4.0, gt=0, description="public bound on |dL/dH| values")
    mask_half_width: float = Field(default=16384.0, gt=0, description="masks for masked decryption: uniform on [-w, w]")

    @model_validator(mode="before")
    @classmethod
    def _default_preset(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "preset" not in raw:
            return {**raw, "preset": default_preset(raw.get("scheme", "plain"), raw.get("key_holder", "receiver"))}
        return raw

    @model_validator(mode="after")
    def _check_scheme(self) -> ProtectionConfig:
        from securevfl.crypto import preset_names

        if self.preset not in preset_names():
            raise ValueError(f"unknown CKKS preset {self.preset!r} (known: {', '.join(preset_names())})")
        return self


def _defense_of_its_kind(raw: Any) -> DefenseConfigBase:
    """Validate one ``[[defense]]`` table against the registry as it is now (so registered defenses count)."""
    return raw if isinstance(raw, DefenseConfigBase) else parse_defense_config(raw)


class RunConfig(_Section):
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
    protection: ProtectionConfig = Field(default_factory=ProtectionConfig)
    attack: SerializeAsAny[AttackConfigBase] = Field(
        default_factory=NoAttackConfig, description="[attack] table; its kind selects the attack's own config"
    )
    defense: list[Annotated[SerializeAsAny[DefenseConfigBase], BeforeValidator(_defense_of_its_kind)]] = Field(
        default_factory=list, description="[[defense]] tables, applied in order; each kind's config validates its table"
    )

    @field_validator("attack", mode="before")
    @classmethod
    def _attack_of_its_kind(cls, raw: Any) -> AttackConfigBase:
        return parse_attack_config(raw)

    @property
    def scheme(self) -> Scheme:
        """The protection scheme object (everything scheme-dependent asks it)."""
        return scheme_for(self.protection)

    @model_validator(mode="after")
    def _check_model_for_scheme(self) -> RunConfig:
        self.scheme.check_model(self.model)
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
        raise ConfigError(_describe_validation_error(exc)) from None


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


def _describe_validation_error(exc: ValidationError) -> str:
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
