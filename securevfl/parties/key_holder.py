"""The key holder of a label-private scheme as a party: announces its public key, answers requests.

It is a :class:`~securevfl.protocols.channel.Server`: it has no place in the training round's
schedule and answers masked decrypt and refresh requests whenever they are queued. When the
active party holds the key, the same organisation runs this role under the active party's
name (its requests are told apart by kind); with a coordinator it is a party of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from securevfl.attacks.base import Attack
from securevfl.protocols import Channel, Message, MessageKind
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.gradient_agreement import GradientAgreement, GradientsDiffer
from securevfl.protocols.keyholder import REQUEST_KINDS, KeyHolder

__all__ = ["KeyHolderParty"]


class KeyHolderParty:
    """Owns the only secret key; sees nothing but masked values."""

    def __init__(
        self,
        service: KeyHolder,
        channel: Channel,
        clients: Sequence[str],
        mask_keys: Mapping[str, bytes] | None = None,
        agreement: GradientAgreement | None = None,
        active: str | None = None,
    ) -> None:
        self.service = service
        self.name = service.name
        self.channel = channel
        self.clients = list(clients)
        self.mask_keys = dict(mask_keys or {})
        """Per passive, the payload of its pairwise mask keys (:mod:`securevfl.protocols.pairwise_masks`), sent after the key."""
        self.agreement = agreement
        """With pairwise masks: the passives' gradient digests, checked before the ``active`` party's requests
        (:mod:`securevfl.protocols.gradient_agreement`)."""
        self.active = active
        self._waiting: list[Message] = []  # the active party's requests that wait for passives' digests
        self._steered: str | None = None
        self.attack: Attack | None = None
        """The attack this key holder runs, if it is the attacker (it sees what it decrypts)."""

    def run_attack(self, attack: Attack) -> None:
        """Attach an attack: it observes every value this key holder decrypts."""
        self.attack = attack
        self.service.observers.append(lambda message, values: attack.decrypted_request(message.step, message.sender, values))

    @property
    def audit(self) -> VisibilityLog:
        return self.service.audit

    def announce(self) -> None:
        """Send the public keyring (with exactly the rotation keys the step uses) to every client, then each passive its
        pairwise mask keys when the run masks activations pairwise."""
        announcement = self.service.announcement()
        for client in self.clients:
            self.channel.send(Message(MessageKind.PUBLIC_KEY, self.name, client, 0, announcement, codec="key"))
        for passive, payload in self.mask_keys.items():
            self.channel.send(Message(MessageKind.MASK_KEYS, self.name, passive, 0, payload, codec="key"))

    def learn(self) -> None:
        """Nothing to learn: the key holder sends to nobody who has to announce first."""

    def serve_pending(self) -> bool:
        served = False
        if self.agreement is not None:
            while (digest := self.channel.poll(self.name, (MessageKind.GRADIENT_DIGEST,))) is not None:
                self.agreement.record(digest)
            waiting, self._waiting = self._waiting, []
            for request in waiting:
                served = self._serve(request) or served
        while (request := self.channel.poll(self.name, REQUEST_KINDS)) is not None:
            served = self._serve(request) or served
        return served

    def _serve(self, request: Message) -> bool:
        if request.sender not in self.clients:
            self.service.refuse(request, "not a party it announced its key to")
            return False
        if self.agreement is not None and request.sender == self.active:
            if self._steered is not None:
                self.service.refuse(request, self._steered, self.channel)
                return False
            try:
                if not self.agreement.ready_for(request.step):
                    self._waiting.append(request)  # a passive's digest is still on its way: answered once it is in
                    return False
            except GradientsDiffer as exc:
                self._steered = str(exc)
                self.service.refuse(request, self._steered, self.channel)
                return False
        return self.service.handle(self.channel, request)
