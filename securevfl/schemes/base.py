"""What a protection scheme is: who holds which key, who can see what, and how its parties are built.

A scheme is the one place that knows how messages are protected in a run. Everything else (the
config checks, the defense placements, the attacks' feasibility, the study's labels, the
benchmark) asks the scheme object instead of testing scheme names, so adding a scheme means
adding one module here and one registry line in :mod:`securevfl.schemes`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from securevfl.roles import Capability, Role

if TYPE_CHECKING:
    from securevfl.data import VFLDataset
    from securevfl.sections import ModelConfig, ProtectionConfig, TrainConfig
    from securevfl.parties import PartyModels
    from securevfl.scheduler import Federation

__all__ = ["Capability", "Role", "Scheme", "SchemeCapabilities"]


@dataclass(frozen=True)
class SchemeCapabilities:
    """A scheme's guarantees and exposures as data, for checks, reports and attacks.

    Attributes:
        ciphertexts: messages travel as CKKS ciphertexts (so under-encryption placements exist).
        key_holder: the role holding the only secret key, or None (plain: no key; receiver:
            every party its own).
        sees: per role, the kinds of *unmasked* plaintext values a party of that role holds from
            the protocol (the protection table of ``docs/protection.md``);
            ``tests/test_architecture.py`` checks every party's visibility audit against it.
        grants: per role, the capabilities attacks at that role may rely on.
    """

    ciphertexts: bool
    key_holder: Role | None
    sees: Mapping[Role, tuple[str, ...]]
    grants: Mapping[Role, frozenset[Capability]]

    def granted(self, role: Role) -> frozenset[Capability]:
        return self.grants.get(role, frozenset())


class Scheme(ABC):
    """One protection scheme: its label, capabilities, load-time checks and assembly."""

    name: str
    """Stable identifier: ``plain``, ``ckks/receiver``, ``ckks/active``, ``ckks/coordinator``."""
    default_preset: str = "transport"
    """CKKS preset used when ``protection.preset`` is not set (ignored without ciphertexts)."""
    label_private: bool = False
    """Whether the scheme's design keeps per-sample gradients from the passive parties.

    This is the design intent; whether a passive can *derive* them anyway (it can: see
    ``docs/roadmap.md``, issue 12) is answered by attacks, not by this flag.
    """

    def __init__(self, protection: ProtectionConfig) -> None:
        self.protection = protection

    @property
    @abstractmethod
    def capabilities(self) -> SchemeCapabilities:
        """What the scheme hides and exposes, per role."""

    @property
    def preset(self) -> str:
        """The CKKS preset this scheme runs with: the configured one, else the scheme's default."""
        return self.protection.preset or self.default_preset

    def label(self, with_preset: bool = False) -> str:
        """Name for tables: ``plain``, ``ckks/<key_holder>`` and, if asked, ``/<preset>``."""
        if not self.capabilities.ciphertexts or not with_preset:
            return self.name
        return f"{self.name}/{self.preset}"

    @property
    def key_holder_party(self) -> str | None:
        """Name of the party that holds the only secret key (None: no single key holder)."""
        return None

    @property
    def key_holder(self) -> str | None:
        """The configured ``key_holder`` for CKKS schemes, None for plain (result.json's field)."""
        return self.protection.key_holder if self.capabilities.ciphertexts else None

    def check_model(self, model: ModelConfig) -> None:
        """Raise ``ValueError`` (reported as a config error) if the scheme cannot train ``model``."""

    def check_train(self, train: TrainConfig) -> None:
        """Raise ``ValueError`` if the scheme cannot run the training settings (e.g. a batch it cannot pack)."""

    def check_bottom_model(self, index: int, model: object) -> None:
        """Raise ``ValueError`` if a user's bottom model ``index`` cannot run under this scheme."""

    def placement_refusal(self, on: str, placement: str) -> str | None:
        """Why a defense on ``on`` messages cannot run at ``placement`` under this scheme, or None.

        Only the scheme-specific reasons (no ciphertexts, values nobody decrypts); the reasons
        that hold under every scheme (a defense cannot be run by the party it guards against)
        are the defense pipeline's.
        """
        if placement == "under_encryption" and not self.capabilities.ciphertexts:
            return f"the {self.name} scheme has no ciphertexts; use pre_encryption or post_decryption"
        return None

    @abstractmethod
    def assemble(
        self, model: ModelConfig, train: TrainConfig, dataset: VFLDataset, blocks: list, models: PartyModels
    ) -> Federation:
        """Every party of the run, wired to one channel (keys are exchanged by :meth:`Federation.connect`)."""
