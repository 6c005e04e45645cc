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

import numpy as np

from securevfl.models import linear_stack
from securevfl.parties import ActiveOwn, BottomShape, LocalParties, PartyModels, PassiveOwn, RunShape, passive_name
from securevfl.protocols import Channel, InProcessChannel, PhaseTimer, fresh_identities
from securevfl.roles import Capability, Role
from securevfl.scheduler import Federation

if TYPE_CHECKING:
    from securevfl.data import VFLDataset
    from securevfl.sections import ModelConfig, ProtectionConfig, TrainConfig

__all__ = ["Capability", "Role", "Scheme", "SchemeCapabilities", "bottom_shape", "run_shape_of"]


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
    def build_party(
        self,
        name: str,
        run: RunShape,
        model: ModelConfig,
        train: TrainConfig,
        own: PassiveOwn | ActiveOwn | None,
        channel: Channel,
        timer: PhaseTimer,
    ) -> LocalParties:
        """Party ``name`` alone, from the public ``run`` facts, its ``own`` inputs and its channel endpoint.

        ``own`` is a :class:`~securevfl.parties.PassiveOwn` for a passive, an
        :class:`~securevfl.parties.ActiveOwn` for the active party and None for a coordinator;
        whatever secret the party needs (its CKKS key pair, the key holder's secret key) is made
        here, in the party's own process, and nowhere else.
        """

    def party_names(self, run: RunShape) -> list[str]:
        """Every party of a run under this scheme (a coordinator is one more party)."""
        return run.party_names(self.key_holder_party)

    def assemble(
        self, model: ModelConfig, train: TrainConfig, dataset: VFLDataset, blocks: list, models: PartyModels
    ) -> Federation:
        """Every party of the run, each built alone by :meth:`build_party` and wired to one in-process channel.

        The channel gives every party a fresh identity key and each party only its endpoint; keys
        are exchanged by :meth:`Federation.connect`.
        """
        run = run_shape_of(dataset, blocks, models)
        names = self.party_names(run)
        channel = InProcessChannel(identities=fresh_identities(names))
        timer = PhaseTimer()
        built = {name: self.build_party(name, run, model, train, _own_inputs(run, name, dataset, blocks, models), channel.endpoint(name), timer) for name in names}
        passives = [built[name].passive for name in run.passive_names]
        active = built[run.active_name].active
        holders = [parties.key_holder for parties in built.values() if parties.key_holder is not None]
        assert active is not None and all(passive is not None for passive in passives)
        return Federation(passives=passives, active=active, channel=channel, timer=timer, key_holder=holders[0] if holders else None)  # type: ignore[arg-type]


def bottom_shape(model: object) -> BottomShape | None:
    """The public architecture of a Linear/ReLU bottom model (None for any other module)."""
    try:
        stack = linear_stack(model)  # type: ignore[arg-type]
    except ValueError:
        return None
    return BottomShape(widths=(stack[0][0].in_features, *(linear.out_features for linear, _ in stack)), relu_after=tuple(relu for _, relu in stack))


def run_shape_of(dataset: VFLDataset, blocks: list, models: PartyModels) -> RunShape:
    """The public facts of an in-process run, read from its data set, blocks and models."""
    return RunShape(
        passive_names=tuple(passive_name(index) for index in range(len(models.bottoms))),
        block_widths=tuple(len(block) for block in blocks),
        bottoms=tuple(bottom_shape(model) for model, _ in models.bottoms),
        bottom_out=models.bottom_out,
        num_classes=dataset.num_classes,
        n_train=len(dataset.y_train),
        n_test=len(dataset.y_test),
    )


def _own_inputs(run: RunShape, name: str, dataset: VFLDataset, blocks: list, models: PartyModels) -> PassiveOwn | ActiveOwn | None:
    """What party ``name`` holds of its own, cut from the whole data set (in-process runs only)."""
    if name in run.passive_names:
        index = run.passive_names.index(name)
        model, optimizer = models.bottoms[index]
        columns = np.asarray(blocks[index])
        return PassiveOwn(x_train=dataset.x_train[:, columns], x_test=dataset.x_test[:, columns], model=model, optimizer=optimizer)
    if name == run.active_name:
        return ActiveOwn(
            y_train=dataset.y_train, y_test=dataset.y_test, top=models.top, top_optimizer=models.top_optimizer, local_block=models.local_block
        )
    return None
