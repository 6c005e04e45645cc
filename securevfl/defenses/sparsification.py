"""Gradient sparsification in the style of Deep Gradient Compression (Lin et al., 2017).

Each message carries only ``k = ceil((1 - drop_rate) * n)`` of its ``n`` entries; the others are
set to zero. The withheld entries are kept in a *residual* that is added to later messages on
the same stream (as in DGC), so every value is delivered eventually, once it has grown large
enough (or, with random selection, once it is drawn). What a residual entry is added to is the
``residual`` setting:

- ``"row"`` (the default, and the only behaviour before the setting existed, so earlier results
  reproduce): the residual is a B x d matrix aligned with the message by position — row i of
  the residual is added to row i of the *next* message, whichever sample that row holds. On
  per-sample gradients dL/dH this moves one sample's withheld gradient onto another sample's.
- ``"sample"``: the residual is kept per training sample (by the sample ids the active party
  knows, :attr:`MessageContext.sample_ids`) and added to that same sample's row the next time
  the sample is in a batch, usually the next epoch. This is DGC's per-coordinate accumulation
  read with the coordinates of the message that is sparsified: a row of dL/dH belongs to one
  sample, so "the same coordinate" is the same sample's same output unit.
- ``"none"``: withheld entries are dropped for good (random-k dropout of the message).

``accumulate`` (true / false) is the earlier spelling of ``"row"`` / ``"none"`` and is still
accepted and stored (always equal to ``residual != "none"``), so stored run configs compare equal.

For ``"row"``, messages of different sizes (the last batch of an epoch is usually shorter) are handled as
follows: a message of B rows takes the first B rows of the residual; residual rows beyond B are
*carried*, frozen, until a message is long enough to take them; a message longer than the
residual extends it. No mass is ever lost, which the tests check: for every stream,
``sent + new residual == message + old residual`` entry by entry, exactly (zero-padded to the
larger shape). The count ``k`` is over the real entries of the message alone.

Momentum correction (Lin et al.) accumulates velocity instead of raw gradients:
``u <- m * u + g``, ``v <- v + u``, send the selected entries of ``v`` and zero them in both
``u`` and ``v``. The receiver then gets momentum-accumulated values and should not apply
momentum again. Carried rows of ``u`` are frozen like those of ``v`` (no decay while unused);
with ``residual = "sample"``, ``u`` and ``v`` are both kept per sample and frozen between the
sample's batches.
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
    residual: Literal["row", "sample", "none"] = Field(
        default="row",
        description=(
            "where withheld entries go: row (added to the same batch row of the next message, today's default), "
            "sample (added to the same sample's row at its next batch), none (dropped)"
        ),
    )
    accumulate: bool = Field(
        default=True,
        description="earlier spelling of residual: true = row (or sample), false = none; kept equal to residual != 'none'",
    )
    momentum_correction: bool = Field(default=False, description="accumulate velocity, not gradients (Lin et al.)")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="momentum m of the correction (ignored without it)")

    label_knobs = ("drop_rate",)

    @model_validator(mode="before")
    @classmethod
    def _residual_and_accumulate_agree(cls, data: Any) -> Any:
        """Fill whichever of ``residual`` / ``accumulate`` is missing from the other; refuse a contradiction."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        residual, accumulate = data.get("residual"), data.get("accumulate")
        if residual is None and isinstance(accumulate, bool):
            data["residual"] = "row" if accumulate else "none"
        elif isinstance(residual, str) and accumulate is None:
            data["accumulate"] = residual != "none"
        elif isinstance(residual, str) and isinstance(accumulate, bool) and accumulate != (residual != "none"):
            raise ValueError(f"residual = {residual!r} contradicts accumulate = {str(accumulate).lower()}; set residual alone")
        return data

    def label(self) -> str:
        """The usual label; a residual other than the default ``row`` is named, so table lines differ."""
        text = super().label()
        if self.residual == "row":
            return text
        return text.replace(f"drop_rate={self.drop_rate:g}", f"drop_rate={self.drop_rate:g}, residual={self.residual}", 1)

    @model_validator(mode="after")
    def _check_momentum(self) -> SparsificationConfig:
        if self.momentum_correction and not self.accumulate:
            raise ValueError("momentum_correction accumulates velocity locally; it needs accumulate = true (residual 'row' or 'sample')")
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
    """What one (sender, receiver) stream keeps between messages (``residual = "row"``)."""

    residual: np.ndarray
    velocity: np.ndarray | None


@dataclass
class _SampleStream:
    """What one stream keeps per training sample (``residual = "sample"``): sample id -> row."""

    width: int
    residual: dict[int, np.ndarray]
    velocity: dict[int, np.ndarray] | None


class Sparsification(Defense):
    """Keep the top-k (or a random k) of each message's entries; accumulate the rest locally.

    Placements: ``pre_encryption`` and ``post_decryption`` always. ``under_encryption`` only for
    ``selection = "random"`` with ``residual = "none"`` and at least one multiplicative level:
    the holder multiplies the ciphertext by a random 0/1 mask.
    """

    name: ClassVar[str] = "sparsification"
    config_type = SparsificationConfig
    config: SparsificationConfig

    def __init__(self, config: SparsificationConfig, rng: np.random.Generator) -> None:
        super().__init__(config, rng)
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._samples: dict[tuple[str, str], _SampleStream] = {}

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
                "CKKS cannot restore levels without the secret key (set residual = 'none', i.e. accumulate = false, or place it "
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
        if self.config.residual == "none":
            return np.where(self._mask(real), real, real.dtype.type(0))
        if self.config.residual == "sample":
            return self._transform_by_sample(real, ctx)
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
        head_u = tail_u = None
        if self.config.momentum_correction:
            old_u = stream.velocity if stream is not None and stream.velocity is not None else old_v[:0]
            head_u, tail_u = _split(old_u, rows, real.dtype)
        sent, kept_v, kept_u = self._sparsify(real, head_v, head_u)
        residual = np.concatenate([kept_v, tail_v])
        new_velocity = None if kept_u is None else np.concatenate([kept_u, tail_u])
        self._streams[key] = _Stream(residual, new_velocity)
        return sent

    def _sparsify(self, real: np.ndarray, head_v: np.ndarray, head_u: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """DGC's step on rows whose carried residual (and velocity, with momentum correction) are given:
        ``(sent, residual kept, velocity kept)``."""
        if head_u is not None:
            velocity = real.dtype.type(self.config.momentum) * head_u + real
            accumulated = head_v + velocity
        else:
            accumulated = real + head_v
        mask = self._mask(accumulated)
        zero = real.dtype.type(0)
        kept_u = None if head_u is None else np.where(mask, zero, velocity)
        return np.where(mask, accumulated, zero), np.where(mask, zero, accumulated), kept_u

    def _transform_by_sample(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        """As the row path, with each row's residual (and velocity) taken from and returned to its sample."""
        if ctx.sample_ids is None:
            raise ValueError(
                f"sparsification with residual = 'sample' needs the sample ids of each message; the {ctx.kind} "
                f"from {ctx.sender} to {ctx.receiver} at step {ctx.step} has none"
            )
        ids = ctx.sample_ids
        if len(set(ids)) != len(ids):
            raise ValueError(f"a message at step {ctx.step} holds the same sample twice; per-sample residuals need distinct ids")
        width = real.shape[1]
        key = (ctx.sender, ctx.receiver)
        stream = self._samples.setdefault(key, _SampleStream(width, {}, {} if self.config.momentum_correction else None))
        if stream.width != width:
            raise ValueError(
                f"sparsification residual for {ctx.sender} -> {ctx.receiver} has {stream.width} "
                f"features, the message at step {ctx.step} has {width}"
            )
        zero_row = np.zeros(width, dtype=real.dtype)
        head_v = np.stack([stream.residual.get(i, zero_row) for i in ids]).astype(real.dtype, copy=False) if ids else real[:0]
        head_u = None
        if stream.velocity is not None:
            head_u = np.stack([stream.velocity.get(i, zero_row) for i in ids]).astype(real.dtype, copy=False) if ids else real[:0]
        sent, kept, kept_u = self._sparsify(real, head_v, head_u)
        for row, sample in enumerate(ids):
            stream.residual[sample] = kept[row].copy()
            if stream.velocity is not None and kept_u is not None:
                stream.velocity[sample] = kept_u[row].copy()
        return sent

    # ------------------------------------------------------------------ encrypted path
    def apply_encrypted(self, tensor: EncryptedTensor, ctx: MessageContext) -> EncryptedTensor:
        """Random-k under encryption: multiply by a random 0/1 mask (one level), nothing kept.

        Raises:
            PlacementError: top_k selection, a kept residual, or no level left on ``tensor``.
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
        """A copy of the withheld values of a stream (``None`` before its first message).

        With ``residual = "sample"``: one row per sample seen so far, in the order of
        :meth:`residual_ids`.
        """
        if self.config.residual == "sample":
            by_sample = self._samples.get((sender, receiver))
            return None if by_sample is None else _rows(by_sample.residual, by_sample.width)
        stream = self._streams.get((sender, receiver))
        return None if stream is None else stream.residual.copy()

    def residual_ids(self, sender: str, receiver: str) -> list[int]:
        """The sample ids of :meth:`residual`'s rows, ascending (``residual = "sample"`` only; else empty)."""
        by_sample = self._samples.get((sender, receiver))
        return [] if by_sample is None else sorted(by_sample.residual)

    def velocity(self, sender: str, receiver: str) -> np.ndarray | None:
        """A copy of the momentum-correction velocity of a stream (``None`` without correction)."""
        if self.config.residual == "sample":
            by_sample = self._samples.get((sender, receiver))
            return None if by_sample is None or by_sample.velocity is None else _rows(by_sample.velocity, by_sample.width)
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
        state["samples"] = [
            {
                "sender": sender,
                "receiver": receiver,
                "ids": np.array(sorted(stream.residual), dtype=np.int64),
                "residual": _rows(stream.residual, stream.width),
                "velocity": None if stream.velocity is None else _rows(stream.velocity, stream.width),
            }
            for (sender, receiver), stream in self._samples.items()
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
        samples: dict[tuple[str, str], _SampleStream] = {}
        for entry in state.get("samples", []):  # absent in checkpoints written before residual = "sample"
            ids = [int(i) for i in np.asarray(entry["ids"])]
            residual = np.array(entry["residual"], copy=True)
            velocity = None if entry["velocity"] is None else np.array(entry["velocity"], copy=True)
            if residual.ndim != 2 or residual.shape[0] != len(ids) or (velocity is not None and velocity.shape != residual.shape):
                raise ValueError(f"malformed sparsification state for {entry['sender']} -> {entry['receiver']}")
            if self.config.momentum_correction != (velocity is not None):
                raise ValueError("saved sparsification state and this configuration disagree on momentum_correction")
            samples[(entry["sender"], entry["receiver"])] = _SampleStream(
                residual.shape[1],
                {i: residual[row].copy() for row, i in enumerate(ids)},
                None if velocity is None else {i: velocity[row].copy() for row, i in enumerate(ids)},
            )
        if (streams and self.config.residual != "row") or (samples and self.config.residual != "sample"):
            raise ValueError(f"saved sparsification state and this configuration disagree on residual ({self.config.residual!r})")
        super().load_state_dict(state)
        self._streams = streams
        self._samples = samples


def _rows(by_sample: dict[int, np.ndarray], width: int) -> np.ndarray:
    """Per-sample rows stacked in ascending sample id (an empty ``0 x width`` array when there are none)."""
    if not by_sample:
        return np.zeros((0, width))
    return np.stack([by_sample[i] for i in sorted(by_sample)])


def _split(stored: np.ndarray, rows: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows`` x d part of a stored buffer aligned with a message (zero-padded), and the carried tail."""
    head = np.zeros((rows, stored.shape[1]), dtype=dtype)
    overlap = min(rows, stored.shape[0])
    head[:overlap] = stored[:overlap]
    return head, stored[rows:].astype(dtype, copy=False)
