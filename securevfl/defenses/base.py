"""The defense interface: where a transform runs, what it sees, and how it refuses.

A defense transforms one message (activations or per-sample gradients, one row per sample) on
its way from a sender to a receiver. The same transform can sit at different points of the
message pipeline (see :class:`Placement`); which points are possible depends on the transform
(clipping needs comparisons) and on the CKKS parameter set (a 0/1 mask needs a level). Asking
for an impossible point raises :class:`PlacementError` with the reason, so a configuration
fails when it is loaded rather than halfway through a run.

Every defense's configuration derives from :class:`DefenseConfigBase`, which lives here (not
beside the registry) so that a defense module needs only this module: config and class of one
defense sit in one file, and the registry imports the defense modules, never the reverse.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from securevfl.errors import PlacementError

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor

__all__ = ["Defense", "DefenseConfigBase", "MessageContext", "Placement", "PlacementError", "clip_rows"]


class Placement(str, Enum):
    """Where in the pipeline ``sender -> encrypt -> holders -> decrypt -> receiver`` a defense runs."""

    PRE_ENCRYPTION = "pre_encryption"
    """By the sender, on plaintext, before encryption."""
    UNDER_ENCRYPTION = "under_encryption"
    """By a party holding only the ciphertext, with homomorphic operations."""
    POST_DECRYPTION = "post_decryption"
    """By the party that decrypts, on plaintext."""


class DefenseConfigBase(BaseModel):
    """Fields every defense has: its ``kind``, which messages it transforms, and where.

    Unknown keys and out-of-range values (NaN and infinity included) are rejected when the
    configuration is read, so a typo never silently turns a defense off. Placement checks that
    depend on the CKKS parameter set (levels) happen later, in
    :meth:`Defense.check_placement`.

    A subclass narrows ``kind`` to a one-value ``Literal`` with that value as default (the
    discriminator of :data:`~securevfl.defenses.registry.DefenseConfig`), and lists in
    :attr:`label_knobs` the fields that tell its settings apart, so that tables can describe
    it (:meth:`label`) without knowing its fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    on: Literal["gradient", "activation"] = Field(
        default="gradient", description="which messages: per-sample gradients dL/dH or activations H"
    )
    placement: Placement = Field(
        default=Placement.PRE_ENCRYPTION,
        description="pre_encryption (sender), under_encryption (ciphertext holder), post_decryption (receiver)",
    )
    # Declared after ``on`` and ``placement`` so that subclasses, which redeclare it, keep the
    # field order (and hence the dumped key order) ``on, placement, kind, <own fields>``.
    kind: str = Field(description="which defense; each subclass fixes it to its own name")

    label_knobs: ClassVar[tuple[str, ...]] = ()
    """Fields shown by :meth:`label`, in order, as ``field=value``."""

    def label(self) -> str:
        """One-line description for tables: ``gaussian_noise(variance=0.0001, gradient, pre_encryption)``.

        Numbers are written with ``:g`` (the format of the committed study tables); the defense
        decides which of its fields are worth showing through :attr:`label_knobs`.
        """
        knobs = [f"{name}={_knob_text(getattr(self, name))}" for name in self.label_knobs]
        return f"{self.kind}({', '.join([*knobs, self.on, self.placement.value])})"


def _knob_text(value: Any) -> str:
    """``value`` as a table shows it: numbers with ``:g``, anything else as its ``str``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value.value if isinstance(value, Enum) else value)


@dataclass(frozen=True)
class MessageContext:
    """What a defense may know about the message it transforms, besides the values.

    Attributes:
        kind: ``"gradient"`` (dL/dH, active -> passive) or ``"activation"`` (H, passive -> active).
        sender, receiver: party names. Stateful defenses keep one state per (sender, receiver).
        step: global training step, for logging and reproducibility checks.
        rows: number of real samples in the message. Messages may be padded to a fixed batch
            size (the label-private schemes do this); entries of padding samples are left
            untouched by every defense, so padding stays zero.
        sample_axis: the axis that indexes samples: 0 for a B x d message (the usual case), 1
            for a feature-major d x B message such as the transposed gradient the label-private
            schemes encrypt.
        value_scale: the public factor a ciphertext's values carry (the one-key-holder schemes send
            per-sample gradients, the mean-loss gradient times the batch's sample count, for CKKS
            precision). A defense under encryption that adds something scales it by this factor,
            so its effect on the gradient the receiver ends up with is the configured one.
        sample_ids: the training-set index of each real row, in row order, when the sender knows
            it (``None`` otherwise). A defense that keeps state per sample rather than per batch
            row (sparsification with ``residual = "sample"``) needs it.
    """

    kind: Literal["gradient", "activation"]
    sender: str
    receiver: str
    step: int
    rows: int
    sample_axis: Literal[0, 1] = 0
    value_scale: float = 1.0
    sample_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("gradient", "activation"):
            raise ValueError(f"message kind must be 'gradient' or 'activation', got {self.kind!r}")
        if self.rows < 0:
            raise ValueError(f"rows must be non-negative, got {self.rows}")
        if self.step < 0:
            raise ValueError(f"step must be non-negative, got {self.step}")
        if self.sample_axis not in (0, 1):
            raise ValueError(f"sample_axis must be 0 or 1, got {self.sample_axis!r}")
        if not self.value_scale > 0:
            raise ValueError(f"value_scale must be positive, got {self.value_scale!r}")
        if self.sample_ids is not None and len(self.sample_ids) != self.rows:
            raise ValueError(f"{len(self.sample_ids)} sample ids for {self.rows} rows")


class Defense(ABC):
    """Base class of a message defense.

    Subclasses set :attr:`name` (equal to their config's ``kind``), :attr:`config_type`,
    :attr:`impossible` (placements the transform can never use, with the reason) and implement
    :meth:`_transform`, which receives only the real samples, sample-major (B x d). The base
    class handles padding and feature-major messages, so every defense treats them alike.

    Args:
        config: the defense's validated configuration.
        rng: the generator for every random draw of this defense. It is owned by the defense
            from now on (its state is part of :meth:`state_dict`); give each defense its own.
    """

    name: ClassVar[str]
    config_type: ClassVar[type[DefenseConfigBase]]
    placements: ClassVar[frozenset[Placement]] = frozenset(Placement)
    """Placements possible for *some* configuration (derived from :attr:`impossible`);
    :meth:`check_placement` decides for this one."""
    impossible: ClassVar[Mapping[Placement, str]] = {}
    """Placements this transform can never use, each with the reason."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "placements" not in cls.__dict__:
            cls.placements = frozenset(p for p in Placement if p not in cls.impossible)

    def __init__(self, config: DefenseConfigBase, rng: np.random.Generator) -> None:
        if not isinstance(config, self.config_type):
            raise TypeError(f"{type(self).__name__} needs a {self.config_type.__name__}, got {type(config).__name__}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.config = config
        self._rng = rng

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # ------------------------------------------------------------------ configuration
    @property
    def placement(self) -> Placement:
        """The placement this defense was configured for."""
        return self.config.placement

    @property
    def on(self) -> str:
        """The message kind this defense transforms (``"gradient"`` or ``"activation"``)."""
        return self.config.on

    def applies_to(self, ctx: MessageContext) -> bool:
        """Whether a message of this context is one this defense was configured to transform."""
        return ctx.kind == self.config.on

    def check_placement(self, placement: Placement | str, *, preset_depth: int) -> None:
        """Raise :class:`PlacementError` if this defense cannot run at ``placement``.

        Args:
            placement: where the pipeline would run it.
            preset_depth: multiplicative levels left for this transform on the message's
                ciphertext (the preset's depth minus whatever the scheme itself spends). Only
                :attr:`Placement.UNDER_ENCRYPTION` looks at it.
        """
        placement = Placement(placement)
        if preset_depth < 0:
            raise ValueError(f"preset_depth must be non-negative, got {preset_depth}")
        problems = self._placement_problems(placement, preset_depth)
        if problems:
            raise PlacementError(f"defense {self.name!r} cannot run {placement.value}: " + "; ".join(problems))

    def _placement_problems(self, placement: Placement, preset_depth: int) -> list[str]:
        """Every reason ``placement`` is impossible for this configuration (empty when possible)."""
        reason = self.impossible.get(placement)
        return [reason] if reason else []

    # ------------------------------------------------------------------ transforms
    def apply(self, values: np.ndarray, ctx: MessageContext) -> np.ndarray:
        """Transform a plaintext message; returns a new array of the same shape and dtype.

        Entries of padding samples (beyond ``ctx.rows``) are returned unchanged.
        """
        view = _sample_major(values, ctx)
        out = np.array(values, copy=True)
        out_view = out if ctx.sample_axis == 0 else out.T
        out_view[: ctx.rows] = self._transform(view[: ctx.rows], ctx)
        return out

    @abstractmethod
    def _transform(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        """Transform the real samples of a message, sample-major (``ctx.rows`` x d)."""

    def apply_encrypted(self, tensor: EncryptedTensor, ctx: MessageContext) -> EncryptedTensor:
        """Transform a ciphertext homomorphically (``UNDER_ENCRYPTION``).

        Raises:
            PlacementError: this defense cannot run under encryption (the default).
        """
        problems = self._placement_problems(Placement.UNDER_ENCRYPTION, preset_depth=tensor.levels_left)
        reason = "; ".join(problems) or "it has no homomorphic implementation"
        raise PlacementError(f"defense {self.name!r} cannot run {Placement.UNDER_ENCRYPTION.value}: {reason}")

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this defense stopped (a deep copy).

        Contains only plain Python values and numpy arrays, so it pickles (``torch.save``).
        """
        return {"kind": self.name, "rng": copy.deepcopy(self._rng.bit_generator.state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next outputs equal those the saved defense would give.

        Raises:
            ValueError: the state belongs to another kind of defense or random generator.
        """
        if state.get("kind") != self.name:
            raise ValueError(f"state of defense {state.get('kind')!r} cannot be loaded into {self.name!r}")
        expected = self._rng.bit_generator.state.get("bit_generator")
        saved = state["rng"].get("bit_generator")
        if saved != expected:
            raise ValueError(f"saved random state is for a {saved} generator; this defense uses {expected}")
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])


# ---------------------------------------------------------------------- helpers for subclasses
def _sample_major(values: np.ndarray, ctx: MessageContext) -> np.ndarray:
    """``values`` as a samples x features view, after checking it fits ``ctx``."""
    if not isinstance(values, np.ndarray):
        raise TypeError(f"defenses transform numpy arrays, got {type(values).__name__}")
    if values.ndim != 2:
        raise ValueError(f"a message must be 2-D (samples x features), got shape {values.shape}")
    if values.dtype.kind != "f":
        raise TypeError(f"a message must hold floating-point values, got dtype {values.dtype}")
    check_rows(values.shape, ctx)
    view = values if ctx.sample_axis == 0 else values.T
    if not np.all(np.isfinite(view[: ctx.rows])):
        raise ValueError(f"{ctx.kind} from {ctx.sender} to {ctx.receiver} at step {ctx.step} contains NaN or Inf")
    return view


def check_rows(shape: tuple[int, ...], ctx: MessageContext) -> None:
    """Check a message of ``shape`` is 2-D and holds at least ``ctx.rows`` samples."""
    if len(shape) != 2:
        raise ValueError(f"a message must be 2-D (samples x features), got shape {shape}")
    if shape[ctx.sample_axis] < ctx.rows:
        raise ValueError(
            f"message of shape {shape} has {shape[ctx.sample_axis]} samples on axis {ctx.sample_axis}, "
            f"fewer than the {ctx.rows} real rows its context announces"
        )


def embed_real(real: np.ndarray, shape: tuple[int, ...], ctx: MessageContext) -> np.ndarray:
    """A zero array of the message's ``shape`` with the sample-major ``real`` block in place.

    Used to build plaintext operands (noise, masks) for ciphertexts, which may be padded or
    feature-major.
    """
    out = np.zeros(shape, dtype=np.float64)
    view = out if ctx.sample_axis == 0 else out.T
    view[: real.shape[0]] = real
    return out


def clip_rows(real: np.ndarray, max_norm: float, order: int = 2) -> np.ndarray:
    """``real`` with every row scaled down to an L``order`` norm of at most ``max_norm`` (``order`` 1 or 2).

    Rows already inside the ball come back bit-for-bit unchanged (the same array when none is
    over). :class:`~securevfl.defenses.clipping.NormClipping` and the noise defenses' ``clip_norm`` use it (L2 before Gaussian noise, L1 before
    Laplace noise), so the bound their accounting assumes is this function's.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    norms = np.linalg.norm(real.astype(np.float64), ord=order, axis=1)
    over = norms > max_norm
    if not over.any():
        return real
    # Shrink slightly more than max_norm / norm so that rounding to the message's dtype can
    # never leave a clipped row above max_norm (a few ulps of relative error per entry).
    margin = 1.0 - 4.0 * float(np.finfo(real.dtype).eps)
    factors = np.ones_like(norms)
    factors[over] = max_norm / norms[over] * margin
    out = real.copy()
    out[over] = (real[over].astype(np.float64) * factors[over, None]).astype(real.dtype)
    return out
