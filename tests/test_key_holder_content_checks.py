"""What a key holder reveals besides its answers: the flooding's size, refusal reasons, step numbers.

A red-team pass (2026-11-26) broke the hardened key holder four ways without touching its
answers' values; each attack is reproduced here against the old behaviour where that behaviour
still exists (the unhardened, policy-free path), and against the key holder as it is now:

1. the flooding's size followed the request's measured noise, and a request built from
   ``(0, 1)`` (an encryption of the secret key, from public operations) makes that noise a
   function of the key: the size gave the key back, two requests per slot;
2. a refused refresh's reason quoted the decrypted magnitude, and the refusal gave the slot back:
   a sealed passive, which has no decryption rule at all, read every gradient entry;
3. the per-step budget reset whenever the requester wrote a larger step number;
4. the "is it masked?" verdict on the exact, unflooded values was a free oracle.

Synthetic values, the compute preset; no training.
"""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as sealapi

from securevfl.attacks.flooding_size import KAPPA_UNITS, KEY_FACTOR, NoFlooding, flooding_factor, flooding_probe
from securevfl.attacks.key_recovery import secret_key_ciphertext
from securevfl.crypto import EncryptedTensor, Layout, SecretKeyring, get_preset, ring
from securevfl.crypto.flooding import NoiseBoundExceeded, NoiseFlooding, flooded_decrypt, noise_unit
from securevfl.crypto.layout import Packing
from securevfl.protocols import Message, MessageKind, PhaseTimer
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.keyholder import CONTENT_REFUSAL, CONTENT_STRIKES, KeyHolder
from securevfl.protocols.masking import MaskSampler
from securevfl.schemes.label_private.plan import BottomPlan, SealedPlan, TopPlan, sealed_stride
from securevfl.schemes.label_private.policy import FRESH_NOISE_UNITS, label_private_policy
from securevfl.schemes.label_private.precision import AMPLIFICATION
from securevfl.schemes.label_private.sealed import SEALED_WEIGHTS

PARAMS = get_preset("compute")
SECRET = SecretKeyring.generate(PARAMS)
PUBLIC = SECRET.public_keyring()
HALF_WIDTH = 16384.0
KEY_SLOTS = ring.coefficients_to_slots(ring.secret_key_coefficients(SECRET), 1.0)


class Replies:
    """Stands in for the channel: what the key holder sends is what the requester would receive."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


def _policy(sealed: bool = False):
    passives = ("passive_1", "passive_2")
    if sealed:
        stride = sealed_stride(8, [40, 40], 4, PARAMS.slots)
        plans = {name: SealedPlan(8, (40, 4), (False,), stride=stride) for name in passives}
    else:
        plans = {name: BottomPlan(batch=8, widths=(40, 4), relu_after=(False,)) for name in passives}
    return plans, label_private_policy(
        plans=plans, top_plan=None, active="active", key_holder="coordinator", combined_width=4,
        bounds=(64.0, 4.0), eval_batch=64, samples=200, params=PARAMS,
    )


def _holder(sealed: bool = False) -> tuple[dict, KeyHolder]:
    plans, policy = _policy(sealed)
    holder = KeyHolder("coordinator", SECRET, PhaseTimer(), VisibilityLog("coordinator"), policy=policy,
                       flooding=NoiseFlooding(30), mask_half_width=HALF_WIDTH)
    return plans, holder


def _request(kind: MessageKind, sender: str, step: int, tensor: EncryptedTensor, meta: dict | None = None) -> Message:
    return Message(kind, sender, "coordinator", step, tensor.to_bytes(mod_switch_to_last=True), codec="ckks", meta=meta or {})


def _masked(shape: tuple[int, int], seed: int = 0) -> EncryptedTensor:
    values = np.random.default_rng(seed).uniform(-1, 1, shape) + MaskSampler(HALF_WIDTH).draw(shape)
    return EncryptedTensor.encrypt(PUBLIC, values, bound=HALF_WIDTH + 4.0)


def _key_probe(shape: tuple[int, int], slot: int, factor: complex) -> EncryptedTensor:
    """``active_flooding_key_recovery``'s probe ``T * (0, 1) + i * kappa`` at ``slot`` (it decrypts to ``i kappa + T s`` there),
    plus a large real value at the next slot, so that the request also looks masked."""
    decoy = np.zeros(shape)
    decoy.flat[(slot + 1) % PARAMS.slots] = 10_000.0
    return flooding_probe(secret_key_ciphertext(PUBLIC, shape), slot, factor).add_plain(decoy, result_bound=10_001.0)


def test_the_ciphertext_built_from_public_operations_decrypts_to_the_secret_key() -> None:
    unit = secret_key_ciphertext(PUBLIC, (4, 8))
    slots = SECRET.decrypt_vector_complex(unit.ciphertexts[0]) * unit.ciphertexts[0].scale
    np.testing.assert_allclose(slots, KEY_SLOTS, atol=1e-6)


def test_a_measured_flooding_size_gives_the_key_away_and_a_public_one_does_not() -> None:
    """Finding 1. Without a public bound (the unhardened path) the spread of the reply's known slots is
    ``2**15 * |kappa + t Im(s_j)|``: two requests per slot read ``s_j``. With the rule's public bound the
    same request is refused as a ciphertext of no protocol, and one that fits is flooded like any other."""
    kappa = KAPPA_UNITS * KEY_FACTOR / PARAMS.scale
    shape = (64, 64)
    known = np.ones(shape[0] * shape[1], dtype=bool)
    errors = []
    for slot in (0, 7, 100, 1000, 2047, 4000):
        estimate = []
        for factor in (1.0, -1j):  # Im(t s_j), then Im(-i t s_j) = -t Re(s_j)
            flooded = flooded_decrypt(_key_probe(shape, slot, factor), SECRET, NoiseFlooding(30))
            use = known.copy()
            use[[slot, slot + 1]] = False
            sigma = float(np.sqrt(np.mean(flooded.values.ravel()[use] ** 2)))
            estimate.append((sigma / 2.0**15 - kappa) * PARAMS.scale / KEY_FACTOR)
        read = -estimate[1] + 1j * estimate[0]
        errors.append(abs(read - KEY_SLOTS[slot]))
    # each slot read to ~1 % of the spread's size (kappa = 400 units of t / scale): a few units against |s_j| ~ 60;
    # over all 4096 slots these errors average out in the inverse embedding (red-team run: 8192 of 8192 coefficients)
    # against the key's RMS slot size over all slots (6 slots' own sizes vary at random: ~1.4e-4 of runs failed)
    assert np.mean(errors) < 0.25 * float(np.sqrt(np.mean(np.abs(KEY_SLOTS) ** 2)))
    bound = FRESH_NOISE_UNITS * noise_unit(PARAMS)
    with pytest.raises(NoiseBoundExceeded):
        flooded_decrypt(_key_probe(shape, 7, 1.0), SECRET, NoiseFlooding(30), noise_bound=bound)
    honest = [flooded_decrypt(_masked(size, seed), SECRET, NoiseFlooding(30), noise_bound=bound) for seed, size in enumerate([(4, 8), (64, 64)])]
    measured = [flooded_decrypt(_masked(size, seed), SECRET, NoiseFlooding(30)) for seed, size in enumerate([(4, 8), (64, 64)])]
    assert honest[0].sigma == honest[1].sigma == 2.0**15 * bound  # the same for every request of the rule: it says nothing
    assert measured[0].sigma != measured[1].sigma and max(m.sigma for m in measured) < honest[0].sigma  # (measured: each its own)


def test_the_crafted_request_is_refused_with_one_fixed_reason_and_a_second_cuts_its_sender_off() -> None:
    """Finding 1 end to end: the active party's evaluation slot, the key holder of today."""
    _, holder = _holder()
    replies = Replies()
    probe = _key_probe((64, 4), 3, 1.0)
    for strike in range(CONTENT_STRIKES):
        assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "active", 0, probe)) is False
        assert replies.sent[-1].kind == MessageKind.REQUEST_REFUSED and replies.sent[-1].meta["reason"] == CONTENT_REFUSAL
        assert "noisier than the public bound" in holder.refusals[-1]  # the detail stays in the key holder's log
    honest = _masked((64, 4), seed=1)
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "active", 0, honest)) is False
    assert "answered no more" in replies.sent[-1].meta["reason"]
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, _masked((4, 41)))) is True  # others go on


def test_a_sealed_passive_learns_nothing_from_a_refused_refresh() -> None:
    """Finding 2: its ``Enc(G^T)`` re-declared as sealed weights plus a constant beyond the refresh's range.
    Before: the reason quoted ``|G[c, b] + C| * 256`` and the slot came back (640 free probes, every label).
    Now: one fixed reason, the slot used up (the honest refresh of that step is refused), a strike."""
    plans, holder = _holder(sealed=True)
    plan = plans["passive_1"]
    replies = Replies()
    gradient_t = np.random.default_rng(2).uniform(-4, 4, (4, 8)) * AMPLIFICATION
    encrypted = EncryptedTensor.encrypt(PUBLIC, gradient_t, Layout.ROWS, stride=plan.feature_major_stride(0), bound=4.0 * AMPLIFICATION)
    target = (plan.widths[1], plan.widths[0] + 1)
    packing = Packing.create(target, Layout.ROWS, PARAMS.slots, encrypted.packing.stride)
    disguised = EncryptedTensor(PUBLIC, packing, encrypted.ciphertexts, value_bound=encrypted.value_bound, dtype=np.dtype(np.float64))
    beyond = np.zeros(target)
    beyond[1, 2] = 64.0 + HALF_WIDTH + 1100.0
    meta = {"what": SEALED_WEIGHTS, "strides": f"rows:{plan.stride}"}
    probe = disguised.add_plain(beyond, result_bound=float(beyond.max()) + 1100.0)
    assert holder.handle(replies, _request(MessageKind.REFRESH_REQUEST, "passive_1", 0, probe, meta)) is False
    reason = replies.sent[-1].meta["reason"]
    assert reason == CONTENT_REFUSAL and not any(ch.isdigit() for ch in reason)
    weights = np.random.default_rng(3).normal(0, 0.05, target) + MaskSampler(HALF_WIDTH).draw(target)
    honest = EncryptedTensor.encrypt(PUBLIC, weights, Layout.ROWS, stride=plan.stride, bound=64.0 + HALF_WIDTH)
    assert holder.handle(replies, _request(MessageKind.REFRESH_REQUEST, "passive_1", 0, honest, meta)) is False
    assert "matches no request left for step 0" in replies.sent[-1].meta["reason"]


def test_a_requester_cannot_buy_budget_by_writing_larger_step_numbers() -> None:
    """Finding 3: claiming steps 0, 1, 2, ... gave one more decryption each (50 in one real step, measured).
    A step is admitted up to one past the latest step anyone else has reached."""
    _, holder = _holder()
    replies = Replies()
    answered = [holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", step, _masked((4, 41), step))) for step in range(6)]
    assert answered == [True, False, False, False, False, False]
    assert "ahead of the federation (at most step 0 now)" in replies.sent[-1].meta["reason"]
    holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_2", 0, _masked((4, 41), 9)))  # the federation is at step 0
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 1, _masked((4, 41), 10))) is True
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 2, _masked((4, 41), 11))) is False
    holder.note_step(5)  # the host party (an active party holding the key) reports its step
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 6, _masked((4, 41), 12))) is True


def test_the_masked_check_is_not_a_free_oracle() -> None:
    """Finding 4: its verdict on the exact values reached the requester, and a refusal cost nothing."""
    _, holder = _holder()
    replies = Replies()
    unmasked = EncryptedTensor.encrypt(PUBLIC, np.ones((4, 41)), bound=1.0)
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, unmasked)) is False
    assert replies.sent[-1].meta["reason"] == CONTENT_REFUSAL
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, _masked((4, 41)))) is False  # slot used
    assert holder.content_refusals == {"passive_1": ["parameter_gradient is not masked: a requester must hide its value behind a fresh mask"]}


def test_a_malicious_active_party_reads_one_passives_activations_in_its_own_slot() -> None:
    """Finding 5 (docs/threat-model.md, promises): the coordinator cannot tell ``Enc(H_1)`` from the sum it expects, so an
    active party that deviates reads a passive's activations, unless the passives mask them pairwise
    (``protection.activation_masks``; the registry attack ``active_own_slot`` in tests/test_key_holder_hardening.py)."""
    _, holder = _holder()
    replies = Replies()
    activations = np.random.default_rng(6).uniform(-3, 3, (8, 4))
    mask = MaskSampler(HALF_WIDTH).draw(activations.shape)
    own = EncryptedTensor.encrypt(PUBLIC, activations, bound=64.0).add_plain(mask)
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "active", 0, own)) is True
    read = np.asarray(replies.sent[-1].payload) - mask
    assert np.max(np.abs(read - activations)) < 0.05


def test_any_failure_after_decryption_is_a_content_refusal_whose_text_stays_with_the_key_holder() -> None:
    """An unexpected error once the plaintext exists could quote it: the requester gets the fixed reason only."""
    _, holder = _holder()
    replies = Replies()

    def quoting(message: Message, values: np.ndarray) -> None:
        raise ValueError(f"unexpected value {values.ravel()[0]:.6f}")

    holder.observers.append(quoting)
    assert holder.handle(replies, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, _masked((4, 41)))) is False
    assert replies.sent[-1].meta["reason"] == CONTENT_REFUSAL
    assert "unexpected value" in holder.refusals[-1] and holder.content_refusals["passive_1"][0].startswith("failed after decryption")


def test_a_request_is_admitted_under_the_rule_it_names_when_several_fit() -> None:
    """Rules are matched by shape, and a trainable top's ``H_k^T delta`` (part width x hidden) also fits the
    row-bounded rules of the first-layer pre-activation: it was admitted as an evaluation request (per-sample in
    the audit, the evaluation budget spent). The rule named in the request goes first when its shape fits."""
    plans = {name: BottomPlan(batch=8, widths=(6, 4), relu_after=(False,)) for name in ("passive_1", "passive_2")}
    policy = label_private_policy(
        plans=plans, top_plan=TopPlan(batch=8, part_width=4, hidden=5), active="active", key_holder="coordinator",
        combined_width=5, bounds=(64.0, 4.0), eval_batch=64, samples=200, params=PARAMS,
    )
    tensor = _masked((4, 5)).to_bytes(mod_switch_to_last=True)

    def admitted(what: str, step: int) -> str:
        message = Message(MessageKind.DECRYPT_REQUEST, "active", "coordinator", step, tensor, codec="ckks", meta={"what": what})
        return policy.admit(message)[0].what

    assert [admitted("top_weight_gradient", 0) for _ in plans] == ["top_weight_gradient"] * 2
    assert admitted("first_layer_preactivation", 0) == "first_layer_preactivation"  # a short last batch: still its own
    assert admitted("top_weight_gradient", 0) == "eval_first_layer_preactivation"  # beyond its budget: the next that fits


def test_a_request_header_declares_the_masks_width_not_the_requesters_tracked_bound() -> None:
    """A tracked bound follows the plaintexts the requester multiplied (``Enc(v) @ A``: ``bound(v) x`` the largest
    column l1 norm of ``A``, here ``x max|A|``) plus ``max|R|``: written in the request's header it gave the key holder
    the passive's largest per-feature l1 sum of its batch and its weights' column norms, and the masked values'
    largest entry nearly cancels ``max|R|`` (review, 2026-11-27)."""
    from securevfl.parties import KeyHolderParty
    from securevfl.protocols import InProcessChannel
    from securevfl.protocols.keyholder import MaskedKeyHolderClient
    from securevfl.crypto.wire import decode_tensor_bytes

    channel, timer = InProcessChannel(), PhaseTimer()
    holder = KeyHolder("coordinator", SECRET, timer, VisibilityLog("coordinator"), flooding=NoiseFlooding(0), mask_half_width=HALF_WIDTH)
    channel.attach_server(KeyHolderParty(holder, channel, clients=["passive_1"]))
    client = MaskedKeyHolderClient("passive_1", "coordinator", PUBLIC, channel, MaskSampler(HALF_WIDTH), timer)
    headers = []
    original = channel.send

    def spy(message: Message) -> None:
        if message.kind == MessageKind.DECRYPT_REQUEST:
            headers.append(decode_tensor_bytes(bytes(message.payload))[0].value_bound)
        original(message)

    channel.send = spy  # type: ignore[method-assign]
    features = np.random.default_rng(0).uniform(0, 50, (8, 5))  # private: its largest entry would be in the tracked bound
    product = EncryptedTensor.encrypt(PUBLIC, np.full((8, 5), 0.5), bound=4.0).multiply_plain(features)
    assert product.value_bound == pytest.approx(4.0 * features.max())
    revealed = client.reveal(product, 0, "parameter_gradient", per_sample=False)
    np.testing.assert_allclose(revealed, 0.5 * features, atol=1e-3)
    assert headers == [2.0 * HALF_WIDTH]


@pytest.mark.parametrize("bits", [2, 11, 30, 40])
def test_the_flooding_size_attack_measures_the_key_holders_flooding_factor_exactly(bits: int) -> None:
    """One calibration request (``Enc(0) + i kappa``) gives ``2**(bits/2)`` exactly (rounded from a ~1 % estimate):
    the attacker needs no assumption about the key holder's ``flooding_bits`` (review, 2026-11-27)."""
    unit = secret_key_ciphertext(PUBLIC, (64, 64))
    assert flooding_factor(unit, lambda probe: flooded_decrypt(probe, SECRET, NoiseFlooding(bits)).values) == 2.0 ** (bits / 2)
    with pytest.raises(NoFlooding, match="no flooding to read"):
        flooding_factor(unit, lambda probe: flooded_decrypt(probe, SECRET, NoiseFlooding(0)).values)
