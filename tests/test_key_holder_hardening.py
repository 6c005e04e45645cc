"""The key holder is not a decryption oracle: key recovery before and after flooding, hostile requests.

The attack is written first (:mod:`securevfl.attacks.key_recovery`) and must succeed against the
unhardened key holder; the same attack must fail against the default one. Every hostile request
is refused with no value in reply (only a ``request_refused`` message with the reason, so an honest
requester fails at once), and the key holder goes on serving honest ones.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from helpers import random_dataset
from securevfl.attacks.key_recovery import _times_monomial, _zero_probe, decrypt_with_secret, recover_secret_key, verify_secret_key
from securevfl.config import validate_config
from securevfl.crypto import EncryptedTensor, Layout, SecretKeyring, get_preset, ring
from securevfl.crypto.flooding import NoiseFlooding, flooded_decrypt
from securevfl.parties.key_holder import KeyHolderParty
from securevfl.protocols import InProcessChannel, Message, MessageKind, PhaseTimer, Roster, fresh_identities
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.errors import RequestRefusedError
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.masking import MaskSampler
from securevfl.protocols.threaded_channel import ThreadedNetwork
from securevfl.schemes.label_private.plan import BottomPlan
from securevfl.schemes.label_private.policy import label_private_policy
from securevfl.training import run_training

SECRET = SecretKeyring.generate(get_preset("compute"))
PUBLIC = SECRET.public_keyring()
N = PUBLIC.params.poly_modulus_degree


def true_secret_key(secret: SecretKeyring) -> np.ndarray:
    return ring.secret_key_coefficients(secret)


# ---------------------------------------------------------------------- the algebra, checked by hand
def test_negacyclic_ring_matches_schoolbook_multiplication() -> None:
    n, q = 16, 97  # 97 = 1 mod 32
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, q, n), rng.integers(0, q, n)
    expected = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for j in range(n):
            sign = 1 if i + j < n else -1  # X^n = -1
            expected[(i + j) % n] += sign * a[i] * b[j]
    field = ring.NegacyclicRing(n, q)
    assert [int(v) for v in field.mul(a, b)] == [int(v) % q for v in expected]
    inverse = field.invert(a)
    assert [int(v) for v in field.mul(a, inverse)] == [1] + [0] * (n - 1)


def test_slots_and_coefficients_invert_each_other() -> None:
    coefficients = np.random.default_rng(1).integers(-50, 50, N)
    slots = ring.coefficients_to_slots(coefficients, 2.0**40)
    assert np.array_equal(ring.slots_to_coefficients(slots, 2.0**40, N), coefficients)


def test_the_ring_decrypts_like_seal() -> None:
    values = np.random.default_rng(2).uniform(-1, 1, PUBLIC.params.slots)
    tensor = EncryptedTensor.encrypt(PUBLIC, values, Layout.FLAT, bound=1.0)
    np.testing.assert_allclose(decrypt_with_secret(PUBLIC, tensor, true_secret_key(SECRET)), values, atol=1e-6)
    np.testing.assert_allclose(tensor.decrypt(SECRET), values, atol=1e-6)


# ---------------------------------------------------------------------- flooding
def test_flooding_noise_is_two_to_the_half_kappa_times_the_measured_noise() -> None:
    values = np.random.default_rng(3).uniform(-1, 1, PUBLIC.params.slots)
    tensor = EncryptedTensor.encrypt(PUBLIC, values, Layout.FLAT, bound=1.0).mod_switch_to_last()
    flooded = flooded_decrypt(tensor, SECRET, NoiseFlooding(30))
    assert flooded.sigma == pytest.approx(2.0**15 * flooded.noise_bound)
    error = flooded.values - values
    assert np.std(error) == pytest.approx(flooded.sigma, rel=0.05)  # 4096 draws: 5 % is > 4 standard errors
    np.testing.assert_allclose(flooded.exact, values, atol=1e-6)  # what the key holder itself sees
    assert np.array_equal(flooded_decrypt(tensor, SECRET, NoiseFlooding(0)).values, flooded.exact)


def test_amplifying_a_ciphertext_amplifies_its_flooding() -> None:
    """The measured noise is the ciphertext's own: scaling it up cannot buy a relatively smaller flood."""
    probe = _zero_probe(PUBLIC, (PUBLIC.params.slots,))  # 64 * Enc(0)
    plain = EncryptedTensor.encrypt(PUBLIC, np.zeros(PUBLIC.params.slots), Layout.FLAT, bound=1.0, levels=0)
    small = flooded_decrypt(plain, SECRET, NoiseFlooding(30)).noise_bound
    large = flooded_decrypt(probe, SECRET, NoiseFlooding(30)).noise_bound
    assert 16 < large / small < 256


# ---------------------------------------------------------------------- key recovery, before and after
def _key_holder_answers(flooding: NoiseFlooding) -> tuple[np.ndarray, np.ndarray, EncryptedTensor]:
    """The two decryptions the attack asks for, answered by a key holder, through the honest client."""
    channel, timer = InProcessChannel(), PhaseTimer()
    holder = KeyHolder("coordinator", SECRET, timer, VisibilityLog("coordinator"), flooding=flooding, mask_half_width=16384.0)
    channel.attach_server(KeyHolderParty(holder, channel, clients=["passive_1"]))
    client = MaskedKeyHolderClient("passive_1", "coordinator", PUBLIC, channel, MaskSampler(16384.0), timer)
    probe = _zero_probe(PUBLIC, (PUBLIC.params.slots,))
    real = client.reveal(probe, 0, "parameter_gradient", per_sample=False)
    rotated = client.reveal(_times_monomial(PUBLIC, probe, N // 2), 1, "parameter_gradient", per_sample=False)
    return real, rotated, probe


def test_two_unflooded_decryptions_give_away_the_secret_key() -> None:
    real, rotated, probe = _key_holder_answers(NoiseFlooding(0))
    recovered = recover_secret_key(PUBLIC, probe, real, rotated)
    assert np.array_equal(recovered, true_secret_key(SECRET))  # all 8192 coefficients
    assert verify_secret_key(PUBLIC, recovered)


def test_flooded_decryptions_do_not() -> None:
    real, rotated, probe = _key_holder_answers(NoiseFlooding(30))
    recovered = recover_secret_key(PUBLIC, probe, real, rotated)
    truth = true_secret_key(SECRET)
    assert np.mean(recovered == truth) < 0.01  # a ternary guess would match a third; this is noise mod q
    assert not verify_secret_key(PUBLIC, recovered)


DATA = random_dataset(n_train=48, n_test=16, n_features=400, num_classes=4, seed=3)


def _key_recovery_run(key_holder: str, flooding_bits: int) -> dict:
    raw = {
        "parties": {"passive": 2, "split": "even"},
        "model": {"top": "sum", "bottom_hidden": [32]},  # first layer 32 x 201: its gradient fills a ciphertext
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.05, "progress": False},
        "protection": {"scheme": "ckks", "key_holder": key_holder, "flooding_bits": flooding_bits},
        "attack": {"kind": "key_recovery"},
    }
    return run_training(validate_config(raw), dataset=DATA)


@pytest.mark.parametrize("key_holder", ["active", "coordinator"])
def test_a_malicious_passive_reads_every_label_unless_the_key_holder_floods(key_holder: str) -> None:
    undefended = _key_recovery_run(key_holder, 0)["history"][-1]
    assert undefended["key_recovered"] == 1.0 and undefended["key_recovery_label_accuracy"] == 1.0
    hardened = _key_recovery_run(key_holder, 30)["history"][-1]
    assert hardened["key_recovered"] == 0.0
    assert hardened["key_recovery_label_accuracy"] == 0.0  # a key that fails its check reads no label (as the other key attacks)


EVAL_DATA = random_dataset(n_train=32, n_test=16, n_features=40, num_classes=4, seed=4)


def _active_run(key_holder: str, flooding_bits: int, attack: str = "active_key_recovery", masks: str = "none") -> dict:
    raw = {
        "parties": {"passive": 2, "split": "even"},
        "model": {"top": "sum", "bottom_hidden": [8]},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "progress": False},
        "protection": {"scheme": "ckks", "key_holder": key_holder, "flooding_bits": flooding_bits, "activation_masks": masks},
        "attack": {"kind": attack},
    }
    return run_training(validate_config(raw), dataset=EVAL_DATA)


def test_a_malicious_active_reads_every_passives_activations_unless_the_coordinator_floods() -> None:
    """Two spare evaluation-sized requests give the coordinator's key away; flooding keeps it.

    The policy admits an evaluation-sized request at any step (it counts requests per step, it
    does not know where epochs end), so the key arrives in the first step, after that step's
    activations: 3 of the first epoch's 4 batches are read, then every row.
    """
    undefended = _active_run("coordinator", 0)
    first, second = undefended["history"]
    assert first["key_recovered"] == 1.0 and first["key_recovery_activation_rows"] == 0.75
    assert second["key_recovered"] == 1.0 and second["key_recovery_activation_rows"] == 1.0  # every H_k row, every passive
    assert undefended["attack"]["requests_crafted"] == 2 and undefended["attack"]["last_refusal"] is None
    hardened = _active_run("coordinator", 30)
    assert [h["key_recovered"] for h in hardened["history"]] == [0.0, 0.0]
    assert [h["key_recovery_activation_rows"] for h in hardened["history"]] == [0.0, 0.0]
    # the spare requests leave the attacker's own predictions intact: the same accuracy as an honest run
    assert undefended["main_accuracy"] == _active_run("coordinator", 0, attack="none")["main_accuracy"]


def test_the_active_party_reads_single_passives_activations_in_its_own_slot_unless_they_are_masked_pairwise() -> None:
    """The own-slot finding as a registry attack: each passive's Enc(H_k), sent where the coordinator expects the sum,
    is answered (it looks like any masked request) and gives every row (flooded: within 5 %); with pairwise masks the
    same requests are answered too, but decrypt to H_k + M_k, and no row is read."""
    unmasked = _active_run("coordinator", 30, attack="active_own_slot", masks="none")
    assert [h["own_slot_activation_rows"] for h in unmasked["history"]] == [1.0, 1.0]
    masked = _active_run("coordinator", 30, attack="active_own_slot", masks="pairwise")
    assert [h["own_slot_activation_rows"] for h in masked["history"]] == [0.0, 0.0]
    assert masked["attack"]["requests_answered"] == unmasked["attack"]["requests_answered"] == 16  # 2 passives x 4 steps x 2 epochs
    assert masked["epochs_completed"] == 2


def test_with_pairwise_masks_a_recovered_key_reads_no_passives_activations() -> None:
    """The same attack against passives that mask their activations pairwise (the default where they can run): the key
    still goes without flooding, but every Enc(H_k + M_k) it decrypts is under a mask only the sum cancels."""
    masked = _active_run("coordinator", 0, masks="pairwise")
    assert [h["key_recovered"] for h in masked["history"]] == [1.0, 1.0]
    assert [h["key_recovery_activation_rows"] for h in masked["history"]] == [0.0, 0.0]
    assert masked["attack"]["requests_crafted"] == 2


WIDE_DATA = random_dataset(n_train=32, n_test=16, n_features=80, num_classes=4, seed=6)


def _flooding_size_run(flooding_bits: int, policy: str, passive: bool = False) -> dict:
    """The active party's attack on EVAL_DATA (1 epoch), or a passive's on WIDE_DATA: each passive's first layer
    40 -> 100 has 4,100 gradient values, a whole ciphertext's slots to read the spread from (2 epochs)."""
    raw = {
        "parties": {"passive": 2, "split": "even"},
        "model": {"top": "sum", "bottom_hidden": [100 if passive else 8]},
        "train": {"epochs": 2 if passive else 1, "batch_size": 8, "lr": 0.05, "progress": False},
        "protection": {"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": flooding_bits, "decryption_policy": policy,
                       "activation_masks": "none"},  # the rows a recovered key reads (pairwise masks: none, tested above)
        "attack": {"kind": "flooding_key_recovery" if passive else "active_flooding_key_recovery"},
    }
    return run_training(validate_config(raw), dataset=WIDE_DATA if passive else EVAL_DATA)


@pytest.mark.slow
def test_the_flooding_size_gives_the_key_away_unless_it_follows_a_public_bound(caplog: pytest.LogCaptureFixture) -> None:
    """Red-team finding 1 as a registry attack: 2 x 4,096 probes built from ``(0, 1)``, read from the replies' spread.

    Flooding that follows each request's measured noise (no policy) gives every coefficient of the
    key, and with it every passive's activations; the hardened key holder refuses the first probe
    (noisier than the rule's public bound) and the attack stops; an unflooded reply has no spread
    to read (that key falls to ``active_key_recovery`` instead).
    """
    measured = _flooding_size_run(30, "none")
    assert measured["history"][-1]["key_recovered"] == 1.0
    assert measured["history"][-1]["key_recovery_activation_rows"] == 0.75  # the key arrives in the first step, after its rows
    assert measured["attack"]["requests_answered"] == 1 + 2 * 4096 and measured["attack"]["last_refusal"] is None  # calibration
    caplog.clear()
    hardened = _flooding_size_run(30, "protocol")
    assert hardened["history"][-1]["key_recovered"] == 0.0 and hardened["history"][-1]["key_recovery_activation_rows"] == 0.0
    assert hardened["attack"]["requests_answered"] == 0 and "content checks" in hardened["attack"]["last_refusal"]
    assert "its ciphertext is noisier than the public bound" in caplog.text  # refused for the right check (the key holder's log)
    unflooded = _flooding_size_run(0, "none")
    assert unflooded["history"][-1]["key_recovered"] == 0.0 and "no flooding to read" in unflooded["attack"]["no_flooding"]
    assert unflooded["attack"]["requests_answered"] == 1


@pytest.mark.slow
def test_a_passive_reads_every_label_from_the_flooding_size_unless_it_follows_a_public_bound(caplog: pytest.LogCaptureFixture) -> None:
    """The same finding for a malicious passive: its probes go out as extra parameter-gradient requests before
    its honest ones; with the key it decrypts its gradient rows (every label, sum top). The hardened key holder
    refuses the first probe, whose slot that step's honest request then lacks: one update skipped, training goes on."""
    measured = _flooding_size_run(30, "none", passive=True)
    assert [h["key_recovered"] for h in measured["history"]] == [1.0, 1.0]
    assert [h["key_recovery_label_accuracy"] for h in measured["history"]] == [1.0, 1.0]
    assert measured["attack"]["requests_answered"] == 1 + 2 * 4096
    caplog.clear()
    hardened = _flooding_size_run(30, "protocol", passive=True)
    assert "its ciphertext is noisier than the public bound" in caplog.text  # refused for the right check (the key holder's log)
    assert [h["key_recovered"] for h in hardened["history"]] == [0.0, 0.0]
    assert [h["key_recovery_label_accuracy"] for h in hardened["history"]] == [0.0, 0.0]
    assert hardened["attack"]["requests_answered"] == 0 and "content checks" in hardened["attack"]["last_refusal"]
    assert hardened["epochs_completed"] == 2


def test_over_sealed_passives_the_policy_alone_keeps_the_key_and_no_activation_row_exists_to_score() -> None:
    """Sealed passives: the active party's requests are exactly one batch wide (S^T), too small to hold a probe.

    With the policy on, the probes are refused even without flooding; without a policy the key
    goes. Either way nobody holds an activation row in plaintext, so no row it read is scored; with
    no key it read none, which is 0 rows recovered without any scoring.
    """

    def run(policy: str) -> dict:
        raw = {
            "parties": {"passive": 2, "split": "even"},
            "model": {"top": "sum", "bottom_hidden": []},
            "train": {"epochs": 1, "batch_size": 8, "lr": 0.05, "progress": False},
            "protection": {"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": 0, "passive_layer": "sealed",
                           "decryption_policy": policy},
            "attack": {"kind": "active_key_recovery"},
        }
        return run_training(validate_config(raw), dataset=EVAL_DATA)

    guarded = run("protocol")
    assert guarded["history"][-1]["key_recovered"] == 0.0 and guarded["attack"]["requests_crafted"] == 0
    # no key, no row read: 0 rows recovered is known without any truth (the survival table compares it with the open layer)
    assert guarded["history"][-1]["key_recovery_activation_rows"] == 0.0
    assert "decrypt_reply" in guarded["attack"]["last_refusal"]  # the key holder refused the probe: no reply
    open_door = run("none")["history"][-1]
    assert open_door["key_recovered"] == 1.0 and open_door.get("key_recovery_activation_rows") is None


def test_an_active_key_holder_has_nothing_to_recover() -> None:
    result = _active_run("active", 0)
    assert result["attack"]["feasible"] is False and "holds the key itself" in result["attack"]["infeasible_reason"]


# ---------------------------------------------------------------------- hostile requests
PLAN = BottomPlan(batch=4, widths=(7, 4, 2), relu_after=(True, False))


def _guarded() -> tuple[InProcessChannel, KeyHolder, MaskedKeyHolderClient]:
    channel, timer = InProcessChannel(), PhaseTimer()
    policy = label_private_policy(
        plans={"passive_1": PLAN}, top_plan=None, active="active", key_holder="coordinator", combined_width=2,
        bounds=(64.0, 4.0), eval_batch=4, samples=8, params=PUBLIC.params,
    )
    holder = KeyHolder("coordinator", SECRET, timer, VisibilityLog("coordinator"), policy=policy, mask_half_width=16384.0)
    channel.attach_server(KeyHolderParty(holder, channel, clients=["passive_1", "active"]))
    client = MaskedKeyHolderClient("passive_1", "coordinator", PUBLIC, channel, MaskSampler(16384.0), timer)
    return channel, holder, client


def _request(kind: MessageKind, sender: str, step: int, payload: object, meta: dict | None = None) -> Message:
    return Message(kind, sender, "coordinator", step, payload, codec="ckks", meta=meta or {})


def _masked(shape: tuple[int, ...]) -> bytes:
    values = np.random.default_rng(4).uniform(-1, 1, shape) + MaskSampler(16384.0).draw(shape)
    return EncryptedTensor.encrypt(PUBLIC, values, Layout.FLAT, bound=16400.0).to_bytes()


HOSTILE = {
    "wrong kind": lambda: _request(MessageKind.GRADIENT, "passive_1", 0, _masked((4, 8))),
    "wrong sender": lambda: _request(MessageKind.DECRYPT_REQUEST, "active", 0, _masked((4, 8))),
    "wrong shape": lambda: _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, _masked((5, 8))),
    "oversized": lambda: _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, b"\x00" * (64 << 20)),
    "garbage bytes": lambda: _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, b"SVET" + b"\x01" * 200),
    "payload not bytes": lambda: _request(MessageKind.DECRYPT_REQUEST, "passive_1", 0, {"a": 1}),
    "40 layouts": lambda: _request(
        MessageKind.REFRESH_REQUEST, "passive_1", 0, _masked((4, 4)), {"strides": ",".join(["rows_t:8"] * 40)}
    ),
    "malformed layout": lambda: _request(MessageKind.REFRESH_REQUEST, "passive_1", 0, _masked((4, 4)), {"strides": "rows:x"}),
    "meta not a table": lambda: _request(MessageKind.REFRESH_REQUEST, "passive_1", 0, _masked((4, 4)), ["strides"]),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_request_is_refused_without_a_reply_and_the_key_holder_goes_on(name: str) -> None:
    channel, holder, client = _guarded()
    hostile = HOSTILE[name]()
    assert holder.handle(channel, hostile) is False
    assert channel.pending("active" if hostile.sender == "passive_1" else "passive_1") == 0
    # the requester gets only the refusal and its reason, no value
    assert channel.pending(hostile.sender) == 1
    refusal = channel.poll(hostile.sender, (MessageKind.REQUEST_REFUSED,))
    assert refusal is not None and refusal.sender == "coordinator" and refusal.payload.size == 0
    assert refusal.meta["reason"] in holder.refusals[0] and refusal.meta["request"] == str(hostile.kind.value)
    assert len(holder.refusals) == 1 and "refused" in holder.refusals[0]
    # the honest request of the same step is still answered
    value = np.random.default_rng(5).uniform(-1, 1, (4, 8))
    revealed = client.reveal(EncryptedTensor.encrypt(PUBLIC, value, bound=4.0), 0, "parameter_gradient", per_sample=False)
    assert revealed.shape == (4, 8) and np.max(np.abs(revealed - value)) < 0.15  # flooded: 2**15 x the passive rules' public bound, ~2.2e-2 per value


def test_on_a_network_a_refused_request_fails_the_requester_at_once_with_the_reason() -> None:
    """One thread per party, a 30 s receive deadline: the refusal ends the requester's wait, not the deadline."""
    identities = fresh_identities(["passive_1", "active", "coordinator"])
    roster = Roster.of(identities.values())
    network = ThreadedNetwork()
    ends = {name: network.endpoint(identity, roster, receive_timeout=30.0) for name, identity in identities.items()}
    _, holder, _ = _guarded()  # its policy and secret; it answers on its own network endpoint below
    client = MaskedKeyHolderClient("passive_1", "coordinator", PUBLIC, ends["passive_1"], MaskSampler(16384.0), PhaseTimer())
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            request = ends["coordinator"].poll("coordinator", (MessageKind.DECRYPT_REQUEST, MessageKind.REFRESH_REQUEST))
            if request is not None:
                holder.handle(ends["coordinator"], request)
            else:
                ends["coordinator"].wait(0.05)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        value = EncryptedTensor.encrypt(PUBLIC, np.zeros((2, 5)), bound=4.0)
        client.reveal(value, 3, "parameter_gradient", per_sample=False)  # answered
        started = time.monotonic()
        with pytest.raises(RequestRefusedError) as refused:
            client.reveal(value, 3, "parameter_gradient", per_sample=False)  # the slot of step 3 is used
        assert time.monotonic() - started < 10.0
        assert str(refused.value).startswith("passive_1 stopped waiting for a 'decrypt_reply' message from 'coordinator': coordinator refused its decrypt_request (step 3): ")
        assert refused.value.reason in holder.refusals[-1]
    finally:
        stop.set()
        server.join(5.0)
    assert not server.is_alive()


def test_one_request_per_expected_slot_per_step_and_no_replays() -> None:
    channel, holder, client = _guarded()
    holder.note_step(3)  # the federation's step (the host's or another sender's): a requester may not run ahead of it
    value = EncryptedTensor.encrypt(PUBLIC, np.zeros((2, 5)), bound=4.0)
    client.reveal(value, 3, "parameter_gradient", per_sample=False)
    with pytest.raises(RequestRefusedError, match="matches no request left for step 3"):  # at once, with the reason
        client.reveal(value, 3, "parameter_gradient", per_sample=False)  # the layer-1 slot of step 3 is used
    assert "matches no request left for step 3" in holder.refusals[-1]
    with pytest.raises(Exception, match="none is queued"):
        client.reveal(value, 2, "parameter_gradient", per_sample=False)
    # refused before the key holder sees it: no frame whose step goes back is admitted (protocols/framing.py)
    assert str(channel.refusals[-1].error) == "coordinator refused decrypt_request #2 (step 2) from 'passive_1': step 2 goes back from step 3"
    assert holder.handle(channel, _request(MessageKind.DECRYPT_REQUEST, "passive_1", 2, _masked((2, 5)))) is False
    assert "behind step 3" in holder.refusals[-1]  # and the key holder's own rule still refuses it
    client.reveal(value, 4, "parameter_gradient", per_sample=False)  # a new step has a new budget


def test_the_audit_is_the_key_holders_own_description() -> None:
    channel, holder, client = _guarded()
    client.reveal(EncryptedTensor.encrypt(PUBLIC, np.zeros((4, 8)), bound=4.0), 0, "anything the requester says", per_sample=True)
    (sighting,) = holder.audit.sightings()
    assert (sighting.kind, sighting.per_sample, sighting.masked, sighting.shape) == ("parameter_gradient", False, True, (4, 8))


# ---------------------------------------------------------------------- the derivable column
def _derivable(protection: dict, batch: int, n_features: int = 400, top: str = "sum") -> dict:
    data = random_dataset(n_train=48, n_test=16, n_features=n_features, num_classes=4, seed=3)
    model = {"top": "sum", "bottom_hidden": [4]} if top == "sum" else {"top": "trainable", "bottom_hidden": [], "bottom_output": 4, "top_hidden": [5]}
    raw = {
        "parties": {"passive": 2, "split": "even"}, "model": model,
        "train": {"epochs": 1, "batch_size": batch, "lr": 0.05, "progress": False}, "protection": protection,
    }
    return run_training(validate_config(raw), dataset=data)["derivable"]


def test_the_derivable_column_is_computed_from_the_run() -> None:
    # 200 features per passive, batch 8: every batch has full row rank, flooding off: the key too
    open_holder = _derivable({"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": 0}, batch=8)
    rows = {d["attack"]: d for d in open_holder["passive_1"]}
    assert rows["gradient_inversion"]["measure"] == 1.0 and "every label" in rows["gradient_inversion"]["what"]
    assert "key_recovery" in rows and "key_recovery" in {d["attack"] for d in open_holder["active"]}
    # 3 features per passive, batch 8 > rank 4: never exact; default flooding: no key
    hardened = _derivable({"scheme": "ckks", "key_holder": "coordinator"}, batch=8, n_features=6)
    (inversion,) = hardened["passive_1"]
    assert inversion["measure"] == 0.0 and inversion["attack"] == "gradient_inversion"
    # the active key holder can decrypt every passive's activations it receives
    active = _derivable({"scheme": "ckks", "key_holder": "active"}, batch=8, n_features=6)
    assert any(d["what"].startswith("each passive's activation rows") and d["measure"] == 1.0 for d in active["active"])
    assert _derivable({"scheme": "plain"}, batch=8)["passive_1"] == []  # it holds the rows themselves


# ---------------------------------------------------------------------- what the policy cannot see
@pytest.mark.parametrize("key_holder", ["active", "coordinator"])
def test_a_malicious_passive_reads_labels_through_an_expected_request_even_when_hardened(key_holder: str) -> None:
    """The policy checks shapes, not contents: Enc(G^T) relabelled as the last layer's gradient passes."""
    data = random_dataset(n_train=48, n_test=16, n_features=16, num_classes=4, seed=3)
    raw = {
        "parties": {"passive": 2, "split": "even"}, "model": {"top": "sum", "bottom_hidden": [6]},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.05, "progress": False},
        "protection": {"scheme": "ckks", "key_holder": key_holder},  # default hardening
        "attack": {"kind": "row_request"},
    }
    last = run_training(validate_config(raw), dataset=data)["history"][-1]
    assert last["row_request_coverage"] == 7 / 8  # the last layer's request has 6 + 1 columns: 7 of each batch of 8
    assert last["row_request_label_accuracy"] >= 0.95  # chance is 1/4


def test_every_result_says_what_its_configuration_promises() -> None:
    data = random_dataset(n_train=16, n_test=8, n_features=6, num_classes=3, seed=0)

    def promised(protection: dict) -> dict[tuple[str, str], dict]:
        raw = {"parties": {"passive": 2}, "model": {"top": "sum"}, "train": {"epochs": 1, "batch_size": 8, "progress": False},
               "protection": protection}
        rows = run_training(validate_config(raw), dataset=data)["promises"]
        return {(row["asset"], row["adversary"]): row for row in rows}

    default = promised({"scheme": "ckks", "key_holder": "coordinator"})
    labels = default[("labels", "semi-honest passive")]
    assert labels["holds"] is False and labels["why"].startswith("NOT label-private") and labels["attack"] == "gradient_inversion"
    assert default[("the key holder's secret key", "malicious passive")]["holds"] is True
    assert default[("labels", "malicious passive")]["holds"] is False
    unflooded = promised({"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": 0})
    assert unflooded[("the key holder's secret key", "malicious passive")]["holds"] is False
    assert default[("the key holder's secret key", "malicious active")] == {
        **default[("the key holder's secret key", "malicious active")], "holds": True, "attack": "active_key_recovery, active_flooding_key_recovery"}
    assert unflooded[("the key holder's secret key", "malicious active")]["holds"] is False
    # flooding without the policy's public bounds follows the measured noise, whose size gives the key away
    no_policy = promised({"scheme": "ckks", "key_holder": "coordinator", "decryption_policy": "none"})
    passive_row = no_policy[("the key holder's secret key", "malicious passive")]
    assert passive_row["holds"] is False and passive_row["attack"] == "flooding_key_recovery"
    assert no_policy[("the key holder's secret key", "malicious active")]["attack"] == "active_flooding_key_recovery"
    assert no_policy[("the key holder's secret key", "malicious active")]["holds"] is False
    # pairwise masks (the default here) close the own slot; the coordinator's gradient check stops steering
    deviating = default[("activations", "malicious active")]
    assert deviating["holds"] is True and deviating["attack"] == "active_own_slot, gradient_steering"
    assert "active_own_slot reads none" in deviating["why"] and "stops gradient steering" in deviating["why"]
    unmasked = promised({"scheme": "ckks", "key_holder": "coordinator", "activation_masks": "none"})[("activations", "malicious active")]
    assert unmasked["holds"] is False and "activation_masks = 'none'" in unmasked["why"] and "(gradient_steering)" in unmasked["why"]
    active_holder = promised({"scheme": "ckks", "key_holder": "active"})
    assert active_holder[("activations", "semi-honest active")]["holds"] is False
    assert ("the key holder's secret key", "malicious active") not in active_holder  # it holds the key itself
    assert promised({"scheme": "plain"})[("labels", "semi-honest passive")]["holds"] is False


def test_label_dp_turns_the_label_promises_on_where_its_epsilon_is_claimed() -> None:
    from securevfl.promises import promises

    def labels(raw: dict) -> tuple[bool | None, bool | None]:
        rows = {(r["asset"], r["adversary"]): r["holds"] for r in promises(validate_config(raw))}
        return rows[("labels", "semi-honest passive")], rows.get(("labels", "malicious passive"))

    dp = [{"kind": "label_dp", "on": "gradient", "noise_multiplier": 1.0}]
    private = {"protection": {"scheme": "ckks", "key_holder": "coordinator"}, "model": {"top": "sum"}}
    assert labels(private) == (False, False)
    assert labels({**private, "defense": dp}) == (True, True)
    assert labels({**private, "defense": dp, "model": {"top": "trainable"}})[0] is False  # no epsilon claimed there
    assert labels({"protection": {"scheme": "plain"}, "defense": dp})[0] is True
    # clipped CSPRNG Gaussian noise on the rows has a finite epsilon too; unclipped or seeded noise claims nothing
    noise = {"kind": "gaussian_noise", "variance": 0.04, "on": "gradient", "placement": "pre_encryption"}
    assert labels({"protection": {"scheme": "plain"}, "defense": [{**noise, "clip_norm": 0.05, "noise_source": "csprng"}]})[0] is True
    assert labels({"protection": {"scheme": "plain"}, "defense": [noise]})[0] is False
    assert labels({"protection": {"scheme": "plain"}, "defense": [{**noise, "clip_norm": 0.05}]})[0] is False


def test_an_active_block_does_not_hide_a_single_passives_activations() -> None:
    """The active party adds its own block's output after decryption, so with one passive the decrypted sum is
    that passive's H_1 (a review measured every row read to 0.45 %): the promise must not count the block."""
    from securevfl.promises import promises

    def holds(passives: int, active_block: bool) -> bool | None:
        config = validate_config({
            "parties": {"passive": passives, "active_block": active_block}, "model": {"top": "sum"},
            "protection": {"scheme": "ckks", "key_holder": "coordinator"},
        })
        rows = {(row["asset"], row["adversary"]): row for row in promises(config)}
        return rows[("activations", "semi-honest active")]["holds"]

    assert holds(1, True) is False and holds(1, False) is False
    assert holds(2, False) is True and holds(2, True) is True
