"""Running configured defenses on the messages of a run, at the placements the scheme allows.

Who runs what, for each ``on`` x ``placement`` (the active party owns every defense):

==========  ===================================  ===================================  ==========================
on          pre_encryption                       under_encryption                     post_decryption
==========  ===================================  ===================================  ==========================
gradient    active party, before encrypting      active party, on the ciphertext it   refused: the receiver is
            (plaintext in the plain scheme)      just made (CKKS schemes only)        the passive party it guards
                                                                                      against
activation  refused: the sender is the passive   active party, on the received        active party, after
            party it guards against              ciphertext before it is decrypted    decrypting (plain and
                                                 or combined (CKKS schemes only)      receiver schemes)
==========  ===================================  ===================================  ==========================

Under encryption every message is at a level the protocol itself needs (transport messages
at the last level; the label-private schemes keep their levels for the passives'
backpropagation), so a defense there has no multiplicative level: additive noise only.
Defenses act on training messages; inference messages pass unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from securevfl.defenses.base import Defense, DefenseConfigBase, MessageContext, Placement, PlacementError
from securevfl.defenses.registry import build_defense
from securevfl.seeding import derived_seed

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor

__all__ = ["DefensePipeline", "UNDER_ENCRYPTION_DEPTH", "check_scheme_placement"]

#: Multiplicative levels a defense finds on a ciphertext in this engine (see the module doc).
UNDER_ENCRYPTION_DEPTH = 0


class PlacementRules(Protocol):
    """What the pipeline asks of a protection scheme (a :class:`~securevfl.schemes.base.Scheme` is one)."""

    def placement_refusal(self, on: str, placement: str) -> str | None: ...


def check_scheme_placement(config: DefenseConfigBase, scheme: PlacementRules) -> None:
    """Raise :class:`PlacementError` if ``config`` cannot run under this protection scheme.

    Two reasons hold under every scheme (the active party runs every defense, so it cannot run
    one where only the party it guards against holds the values); the rest are the scheme's
    (:meth:`~securevfl.schemes.base.Scheme.placement_refusal`).
    """
    placement, on = Placement(config.placement), config.on
    where = f"defense {config.kind!r} on {on}s cannot run {placement.value}"  # type: ignore[attr-defined]
    if on == "gradient" and placement is Placement.POST_DECRYPTION:
        raise PlacementError(
            f"{where}: gradients are decrypted (if at all) by the passive party that receives them, which is the "
            "party the defense guards against; use pre_encryption or under_encryption"
        )
    if on == "activation" and placement is Placement.PRE_ENCRYPTION:
        raise PlacementError(
            f"{where}: activations are encrypted by the passive party that sends them, which is the party the "
            "defense guards against; use post_decryption (or under_encryption with CKKS)"
        )
    reason = scheme.placement_refusal(on, placement.value)
    if reason is not None:
        raise PlacementError(f"{where}: {reason}")


class DefensePipeline:
    """The run's defenses, in configuration order, applied by the active party."""

    def __init__(self, defenses: Sequence[Defense] = ()) -> None:
        self.defenses = list(defenses)

    @classmethod
    def build(cls, configs: Sequence[DefenseConfigBase], scheme: PlacementRules, seed: int) -> DefensePipeline:
        """Check every placement for the scheme and give each defense its own random stream."""
        defenses = []
        for index, config in enumerate(configs):
            check_scheme_placement(config, scheme)
            rng = np.random.default_rng(derived_seed(seed, "defense", index))
            defenses.append(build_defense(config, rng, preset_depth=UNDER_ENCRYPTION_DEPTH))
        return cls(defenses)

    def __bool__(self) -> bool:
        return bool(self.defenses)

    def _selected(self, placement: Placement, ctx: MessageContext) -> list[Defense]:
        return [d for d in self.defenses if d.placement is placement and d.applies_to(ctx)]

    def plaintext(self, placement: Placement, values: np.ndarray, ctx: MessageContext) -> np.ndarray:
        """Apply the defenses configured at a plaintext ``placement`` to one message."""
        for defense in self._selected(placement, ctx):
            values = defense.apply(values, ctx)
        return values

    def wants_encrypted(self, ctx: MessageContext) -> bool:
        return bool(self._selected(Placement.UNDER_ENCRYPTION, ctx))

    def encrypted(self, packings: Sequence[tuple[EncryptedTensor, MessageContext]]) -> list[EncryptedTensor]:
        """Apply the under-encryption defenses to one message sent as one or more packings.

        A message may travel in several packings (e.g. ``G^T`` and ``G``); each defense then
        draws its randomness once and transforms every packing with the same draw, so all
        packings still carry the same values.
        """
        tensors = [tensor for tensor, _ in packings]
        if not packings:
            return tensors
        for defense in self._selected(Placement.UNDER_ENCRYPTION, packings[0][1]):
            before = defense.state_dict()
            for index, (_, ctx) in enumerate(packings):
                if index:
                    defense.load_state_dict(before)
                tensors[index] = defense.apply_encrypted(tensors[index], ctx)
        return tensors

    def state_dict(self) -> list[dict[str, Any]]:
        return [defense.state_dict() for defense in self.defenses]

    def load_state_dict(self, states: Sequence[Mapping[str, Any]]) -> None:
        if len(states) != len(self.defenses):
            raise ValueError(f"checkpoint holds {len(states)} defense states for {len(self.defenses)} defenses")
        for defense, state in zip(self.defenses, states, strict=True):
            defense.load_state_dict(state)

