"""The ``[model]``, ``[train]`` and ``[protection]`` sections of a run configuration.

They live apart from :class:`~securevfl.config.RunConfig` so that the layers below the run
configuration (the schemes, which read the model and protection settings) depend on plain
settings, never on the whole configuration that checks itself against them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from securevfl.crypto import get_preset, preset_names

__all__ = [
    "ConfigSection", "ModelConfig", "ProtectionConfig", "TrainConfig", "TransportConfig", "activation_masks_refusal",
    "pairwise_activation_masks",
]

_DEFAULT_TOP_HIDDEN = (32,)
#: Widest layer a config may ask for: a larger one is a typo or an attack on memory, not a model.
MAX_WIDTH = 65_536


class ConfigSection(BaseModel):
    """A table of the run configuration: unknown keys refused, every assignment validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(ConfigSection):
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
    top_hidden: list[int] = Field(default_factory=lambda: list(_DEFAULT_TOP_HIDDEN))

    @model_validator(mode="after")
    def _check_widths(self) -> ModelConfig:
        for name in ("bottom_hidden", "top_hidden"):
            if any(width < 1 for width in getattr(self, name)):
                raise ValueError(f"{name} widths must be positive, got {getattr(self, name)}")
            if any(width > MAX_WIDTH for width in getattr(self, name)):
                raise ValueError(f"{name} widths must be at most {MAX_WIDTH} (refused before allocating), got {getattr(self, name)}")
        if self.bottom_output is not None and not 1 <= self.bottom_output <= MAX_WIDTH:
            raise ValueError(f"bottom_output must be between 1 and {MAX_WIDTH}, got {self.bottom_output}")
        # the resolved form of every config lists the default top_hidden, so that one loads again
        if self.top == "sum" and "top_hidden" in self.model_fields_set and self.top_hidden != list(_DEFAULT_TOP_HIDDEN):
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


class TrainConfig(ConfigSection):
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
    threads: int = Field(default=1, ge=1, description="torch intra-op and numpy BLAS threads per process")
    max_loss: float | None = Field(
        default=None, gt=0, description="stop as diverged when an epoch's training loss exceeds this (default 10 x ln(classes))"
    )
    collapse_epochs: int = Field(
        default=3, ge=1, description="a run no more than 5 points above chance accuracy for this many last epochs is 'collapsed'"
    )


class ProtectionConfig(ConfigSection):
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
    preset: str | None = Field(
        default=None, description="CKKS parameters; default: the scheme's (transport: receiver; compute: active, coordinator)"
    )
    activation_bound: float = Field(default=64.0, gt=0, description="public bound on |activation| values")
    gradient_bound: float = Field(default=4.0, gt=0, description="public bound on per-sample |dL/dH| values as sent")
    mask_half_width: float = Field(default=16384.0, gt=0, description="masks for masked decryption: uniform on [-w, w]")
    flooding_bits: int = Field(
        default=30,
        ge=0,
        le=80,
        description="key holder's noise flooding, bits of statistical security (0: off, its decryptions leak its key)",
    )
    decryption_policy: Literal["protocol", "none"] = Field(
        default="protocol",
        description="requests the key holder answers: those the protocol expects ('none': any, a decryption oracle)",
    )
    passive_layer: Literal["open", "sealed"] = Field(
        default="open",
        description=(
            "the passives' bottom: 'open' (plaintext weights, batch-summed gradients revealed) or 'sealed' (one Linear "
            "whose weights exist only encrypted under the key holder's key; key_holder active or coordinator only)"
        ),
    )

    activation_masks: Literal["auto", "pairwise", "none"] = Field(
        default="auto",
        description=(
            "pairwise masks on the passives' activations that cancel only in their sum (sum top, key_holder coordinator, "
            "2 or more passives): the active party cannot have one passive's activations decrypted; 'auto': wherever "
            "they can run"
        ),
    )

    @model_validator(mode="after")
    def _check_scheme(self) -> ProtectionConfig:
        if self.preset is not None and self.preset not in preset_names():
            raise ValueError(f"unknown CKKS preset {self.preset!r} (known: {', '.join(preset_names())})")
        if self.scheme == "ckks" and self.key_holder != "receiver":
            self._check_mask_width()
        if self.passive_layer == "sealed" and (self.scheme != "ckks" or self.key_holder == "receiver"):
            raise ValueError(
                f"passive_layer = 'sealed' needs scheme = 'ckks' with key_holder 'active' or 'coordinator' (got scheme = "
                f"{self.scheme!r}, key_holder = {self.key_holder!r}): only there does one key holder refresh the sealed weights"
            )
        return self

    def _check_mask_width(self) -> None:
        """Masks must hide the values (wide) and still decrypt precisely at the last level (not too wide).

        A masked value ``v + R`` is within total variation ``|v| / (2w)`` of the mask alone: ``w`` at
        least 16 times the larger public bound keeps that below 1/32 per value (the default 16384
        against 64 gives 1/512). It must also decrypt at the last level: ``w + bound`` at most half
        the preset's decryptable ceiling, so CKKS precision is not spent on the mask. (A hidden layer's
        refreshed gradient has a larger bound: the label-private scheme checks it with the model.)
        """
        bound = max(self.activation_bound, self.gradient_bound)
        if self.mask_half_width < 16 * bound:
            raise ValueError(
                f"mask_half_width = {self.mask_half_width:g} hides nothing: it must be at least 16 x the larger value "
                f"bound ({bound:g}), since a masked value is within |v| / (2w) of the mask alone"
            )
        preset = get_preset(self.preset or "compute")
        if self.mask_half_width + bound > preset.decrypt_ceiling / 2:
            raise ValueError(
                f"mask_half_width = {self.mask_half_width:g} loses precision: masked values up to {self.mask_half_width + bound:g} "
                f"must stay within half the decryptable ceiling of preset {preset.name!r} ({preset.decrypt_ceiling:g})"
            )


def activation_masks_refusal(protection: ProtectionConfig, top: str, passives: int) -> str | None:
    """Why pairwise activation masks (:mod:`securevfl.protocols.pairwise_masks`) cannot run in this setting, or None."""
    if protection.scheme != "ckks" or protection.key_holder != "coordinator":
        return (
            "they need scheme = 'ckks' with key_holder = 'coordinator' (the coordinator deals the pair keys; an active "
            "key holder decrypts what it likes, and under 'receiver' the active party receives the activations)"
        )
    if top != "sum":
        return "they need model.top = 'sum': the trainable top multiplies each passive's activations by its own weights, so the masks would not cancel"
    if passives < 2:
        return "they need at least 2 passive parties: a single passive's mask would have to be zero"
    largest = (passives - 1) * protection.mask_half_width + protection.activation_bound
    ceiling = get_preset(protection.preset or "compute").decrypt_ceiling
    if largest > ceiling / 2:
        return (
            f"with {passives} passives a masked activation reaches {largest:g} ((passives - 1) x mask_half_width + "
            f"activation_bound), beyond half the decryptable ceiling of preset {protection.preset!r} ({ceiling:g})"
        )
    return None


def pairwise_activation_masks(protection: ProtectionConfig, top: str, passives: int) -> bool:
    """Whether a run masks its activations pairwise: ``"pairwise"`` (refused at load where it cannot run) or ``"auto"`` where it can."""
    return protection.activation_masks != "none" and activation_masks_refusal(protection, top, passives) is None


class TransportConfig(ConfigSection):
    """How the parties' frames travel: in one process, or one process per party over gRPC.

    ``inprocess`` runs every party in one process (``securevfl train``). ``grpc`` runs each party
    as its own process (``securevfl party``), reached at the address the plan gives it, over
    mutual TLS; the timeouts bound how long a party waits before it reports the peer as gone.
    The transport does not change what is computed: a run gives the same history either way.
    """

    kind: Literal["inprocess", "grpc"] = "inprocess"
    receive_timeout: float = Field(
        default=300.0, gt=0, le=86_400, description="seconds a party waits for an expected message before it gives up"
    )
    connect_timeout: float = Field(
        default=60.0, gt=0, le=3_600, description="seconds a party process waits for its peers to come up at the start"
    )
    send_timeout: float = Field(
        default=120.0, gt=0, le=3_600, description="seconds one frame may take to be delivered once connected (a CKKS keyring is tens of MB)"
    )
    liveness_interval: float = Field(
        default=2.0, gt=0, le=600, description="seconds between the pings a waiting party sends the peer it waits for"
    )
    liveness_timeout: float = Field(
        default=5.0, gt=0, le=600, description="seconds one ping may take; a peer that does not answer is left to receive_timeout"
    )
    gone_after: int = Field(
        default=2, ge=1, le=100, description="consecutive pings that found the peer unreachable before it is reported gone"
    )
