"""Gradient sparsification in the style of Deep Gradient Compression (Lin et al., 2017).

Each message carries only ``k = ceil((1 - drop_rate) * n)`` of its ``n`` entries; the others are
set to zero. With ``accumulate`` (the default, as in DGC) the withheld entries are not lost: the
sender keeps them in a *residual* that is added to its next message on the same stream, so every
value is delivered eventually, once it has grown large enough (or, with random selection, once
it is drawn). The residual is a B x d matrix aligned with the message by position, the way the
defense was evaluated on per-sample gradients: row i of the residual is added to row i of the
next message, whichever sample that row holds.

Messages of different sizes (the last batch of an epoch is usually shorter) are handled as
follows: a message of B rows takes the first B rows of the residual; residual rows beyond B are
*carried*, frozen, until a message is long enough to take them; a message longer than the
residual extends it. No mass is ever lost, which the tests check: for every stream,
``sent + new residual == message + old residual`` entry by entry, exactly (zero-padded to the
larger shape). The count ``k`` is over the real entries of the message alone.

Momentum correction (Lin et al.) accumulates velocity instead of raw gradients:
``u <- m * u + g``, ``v <- v + u``, send the selected entries of ``v`` and zero them in both
``u`` and ``v``. The receiver then gets momentum-accumulated values and should not apply
momentum again. Carried rows of ``u`` are frozen like those of ``v`` (no decay while unused).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from securevfl.defenses.base import Defense, DefenseConfigBase, MessageContext, Placement, PlacementError, check_rows

if TYPE_CHECKING:
    from collections.abc import Mapping

    from securevfl.crypto import EncryptedTensor

__all__ = ["Sparsification", "SparsificationConfig", "kept_entries"]


class SparsificationConfig(DefenseConfigBase):
    """Send only a fraction of the entries; keep the rest locally for later messages (DGC)."""

    kind: Literal["sparsification"] = "sparsification"
    drop_rate: float = Field(ge=0, lt=1, description="fraction s of the entries withheld from each message")
    selection: Literal["top_k", "random"] = Field(
        default="top_k", description="top_k: largest magnitudes; random: a uniformly random subset of the same size"
    )
    accumulate: bool = Field(
        default=True,
        description="add the withheld entries back into the next message (DGC); false: drop them for good",
    )
    momentum_correction: bool = Field(default=False, description="accumulate velocity, not gradients (Lin et al.)")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="momentum m of the correction (ignored without it)")

    label_knobs = ("drop_rate",)

    @model_validator(mode="after")
    def _check_momentum(self) -> SparsificationConfig:
        if self.momentum_correction and not self.accumulate:
            raise ValueError("momentum_correction accumulates velocity locally; it needs accumulate = true")
        return self


def kept_entries(n: int, drop_rate: float) -> int:
    """How many of ``n`` entries a message keeps: ``ceil((1 - drop_rate) * n)``.

    ``drop_rate`` is read as the decimal it was written as (``0.29`` is 29/100, not the nearest
    binary fraction), so ``drop_rate = 0.29`` of 100 entries keeps 71, never 72. At least one
    entry is kept whenever ``n > 0``, since ``drop_rate < 1``.
    """
    dropped = math.floor(Fraction(repr(float(drop_rate))) * n)
    return n - dropped


@dataclass
class _Stream:
    """What one (sender, receiver) stream keeps between messages."""

    residual: np.ndarray
    velocity: np.ndarray | None


class Sparsification(Defense):
    """Keep the top-k (or a random k) of each message's entries; accumulate the rest locally.

    Placements: ``pre_encryption`` and ``post_decryption`` always. ``under_encryption`` only for
    ``selection = "random"`` with ``accumulate = false`` and at least one multiplicative level:
    the holder multiplies the ciphertext by a random 0/1 mask.
    """

    name: ClassVar[str] = "sparsification"
    config_type = SparsificationConfig
    config: SparsificationConfig

    def __init__(self, config: SparsificationConfig, rng: np.random.Generator) -> None:
        super().__init__(config, rng)
        self._streams: dict[tuple[str, str], _Stream] = {}

    # ------------------------------------------------------------------ placement
    def _placement_problems(self, placement: Placement, preset_depth: int) -> list[str]:
        problems = super()._placement_problems(placement, preset_depth)
        if placement is not Placement.UNDER_ENCRYPTION:
            return problems
        if self.config.selection == "top_k":
            problems.append(
                "top_k selection ranks entries by magnitude, which needs the plaintext values, and a "
                "ciphertext holder has only the ciphertext (selection = 'random' needs no plaintext)"
            )
        elif self.config.accumulate:
            problems.append(
                "the withheld entries would have to be kept as a ciphertext that is multiplied by a new "
                "mask at every step, losing one multiplicative level per step until none is left, and "
                "CKKS cannot restore levels without the secret key (set accumulate = false, or place it "
                "pre_encryption or post_decryption)"
            )
        if preset_depth < 1:
            problems.append(
                f"multiplying the ciphertext by a 0/1 mask needs one multiplicative level, but only "
                f"{preset_depth} level(s) are available (depth {preset_depth}; e.g. preset 'compute' has 2)"
            )
        return problems

    # ------------------------------------------------------------------ selection
    def kept(self, n: int) -> int:
        """Entries kept out of ``n`` (see :func:`kept_entries`)."""
        return kept_entries(n, self.config.drop_rate)

    def _mask(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the entries to send, of ``values``' shape."""
        n = values.size
        k = self.kept(n)
        flat = np.zeros(n, dtype=bool)
        if self.config.selection == "top_k":
            # stable sort on -|x|: equal magnitudes are taken in row-major order, deterministically
            chosen = np.argsort(-np.abs(values.ravel()), kind="stable")[:k]
        else:
            chosen = self._rng.choice(n, size=k, replace=False)
        flat[chosen] = True
        return flat.reshape(values.shape)

    # ------------------------------------------------------------------ plaintext path
    def _transform(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        if not self.config.accumulate:
            return np.where(self._mask(real), real, real.dtype.type(0))
        rows, width = real.shape
        key = (ctx.sender, ctx.receiver)
        stream = self._streams.get(key)
        if stream is not None and stream.residual.shape[1] != width:
            raise ValueError(
                f"sparsification residual for {ctx.sender} -> {ctx.receiver} has {stream.residual.shape[1]} "
                f"features, the message at step {ctx.step} has {width}"
            )
        old_v = stream.residual if stream is not None else np.zeros((0, width), real.dtype)
        head_v, tail_v = _split(old_v, rows, real.dtype)
        if self.config.momentum_correction:
            old_u = stream.velocity if stream is not None and stream.velocity is not None else old_v[:0]
            head_u, tail_u = _split(old_u, rows, real.dtype)
            velocity = real.dtype.type(self.config.momentum) * head_u + real
            accumulated = head_v + velocity
        else:
            accumulated = real + head_v
        mask = self._mask(accumulated)
        zero = real.dtype.type(0)
        sent = np.where(mask, accumulated, zero)
        residual = np.concatenate([np.where(mask, zero, accumulated), tail_v])
        new_velocity = None
        if self.config.momentum_correction:
            new_velocity = np.concatenate([np.where(mask, zero, velocity), tail_u])
        self._streams[key] = _Stream(residual, new_velocity)
        return sent

    # ------------------------------------------------------------------ encrypted path
    def apply_encrypted(self, tensor: EncryptedTensor, ctx: MessageContext) -> EncryptedTensor:
        """Random-k under encryption: multiply by a random 0/1 mask (one level), nothing kept.

        Raises:
            PlacementError: top_k selection, ``accumulate = true``, or no level left on ``tensor``.
        """
        problems = self._placement_problems(Placement.UNDER_ENCRYPTION, tensor.levels_left)
        if problems:
            raise PlacementError(
                f"defense {self.name!r} cannot run {Placement.UNDER_ENCRYPTION.value}: " + "; ".join(problems)
            )
        check_rows(tensor.shape, ctx)
        width = tensor.shape[1 - ctx.sample_axis]
        mask = np.ones(tensor.shape)
        view = mask if ctx.sample_axis == 0 else mask.T
        view[: ctx.rows] = self._mask(np.zeros((ctx.rows, width)))
        return tensor.multiply_plain(mask)

    # ------------------------------------------------------------------ inspection and state
    def residual(self, sender: str, receiver: str) -> np.ndarray | None:
        """A copy of the withheld values of a stream (``None`` before its first message)."""
        stream = self._streams.get((sender, receiver))
        return None if stream is None else stream.residual.copy()

    def velocity(self, sender: str, receiver: str) -> np.ndarray | None:
        """A copy of the momentum-correction velocity of a stream (``None`` without correction)."""
        stream = self._streams.get((sender, receiver))
        return None if stream is None or stream.velocity is None else stream.velocity.copy()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["streams"] = [
            {
                "sender": sender,
                "receiver": receiver,
                "residual": stream.residual.copy(),
                "velocity": None if stream.velocity is None else stream.velocity.copy(),
            }
            for (sender, receiver), stream in self._streams.items()
        ]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        streams: dict[tuple[str, str], _Stream] = {}
        for entry in state["streams"]:
            residual = np.array(entry["residual"], copy=True)
            velocity = None if entry["velocity"] is None else np.array(entry["velocity"], copy=True)
            if residual.ndim != 2 or (velocity is not None and velocity.shape != residual.shape):
                raise ValueError(f"malformed sparsification state for {entry['sender']} -> {entry['receiver']}")
            if self.config.momentum_correction != (velocity is not None):
                raise ValueError("saved sparsification state and this configuration disagree on momentum_correction")
            streams[(entry["sender"], entry["receiver"])] = _Stream(residual, velocity)
        super().load_state_dict(state)
        self._streams = streams


def _split(stored: np.ndarray, rows: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows`` x d part of a stored buffer aligned with a message (zero-padded), and the carried tail."""
    head = np.zeros((rows, stored.shape[1]), dtype=dtype)
    overlap = min(rows, stored.shape[0])
    head[:overlap] = stored[:overlap]
    return head, stored[rows:].astype(dtype, copy=False)
