"""Pairwise activation masks (protocols/pairwise_masks.py): they cancel in the sum, nowhere else, and fail loudly.

- the masks of every passive sum to zero (to float rounding), each is as wide as configured, and the
  draws are fixed by key and message number (the passives' own copies agree) and differ between numbers;
- the keyed stream is uniform (a KS test against the uniform distribution) and differs per key;
- a ``MASK_KEYS`` payload with a missing, extra or short key is refused with one line;
- a run with pairwise masks trains exactly as one without (no flooding: the same updates to CKKS precision);
- a passive out of step makes the active party stop with one line instead of training on masked values;
- settings where the masks cannot cancel are refused at load (``"pairwise"``) or leave them off (``"auto"``).
"""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest
from scipy import stats

from securevfl.config import validate_config
from securevfl.crypto.randomness import keyed_uniform
from securevfl.errors import ConfigError
from securevfl.federation import build_federation
from securevfl.protocols import MessageKind, ProtocolError
from securevfl.protocols.pairwise_masks import PairwiseMasks, deal_pair_keys, read_pair_keys
from securevfl.sections import pairwise_activation_masks
from tests.helpers import config, random_dataset

PASSIVES = ("passive_1", "passive_2", "passive_3")


def _masks(half_width: float = 100.0) -> dict[str, PairwiseMasks]:
    payloads = deal_pair_keys(PASSIVES)
    return {name: PairwiseMasks(name, read_pair_keys(payloads[name], name, PASSIVES, "coordinator"), half_width) for name in PASSIVES}


def test_the_masks_of_all_passives_cancel_and_no_single_one_is_small() -> None:
    masks = _masks()
    for kind in (MessageKind.ACTIVATION, MessageKind.EVAL_ACTIVATION, MessageKind.ACTIVATION):
        drawn = [masks[name].next(kind, (64, 10)) for name in PASSIVES]
        np.testing.assert_allclose(np.sum(drawn, axis=0), 0.0, atol=1e-12)
        for mask in drawn:  # a sum of two independent U[-100, 100]: spread over [-200, 200]
            assert 100.0 < np.max(np.abs(mask)) <= 200.0 and abs(float(np.std(mask)) - 100.0 * np.sqrt(2 / 3)) < 10.0
    assert masks["passive_1"].bound == 200.0


def test_a_draw_is_fixed_by_key_and_message_number_and_fresh_for_every_number() -> None:
    key = bytes(range(32))
    first = keyed_uniform(key, bytes(12), -1.0, 1.0, (1000,))
    np.testing.assert_array_equal(first, keyed_uniform(key, bytes(12), -1.0, 1.0, (1000,)))
    assert not np.allclose(first, keyed_uniform(key, bytes(11) + b"\x01", -1.0, 1.0, (1000,)))
    assert not np.allclose(first, keyed_uniform(bytes(32), bytes(12), -1.0, 1.0, (1000,)))
    assert stats.kstest((first + 1.0) / 2.0, "uniform").pvalue > 1e-6
    masks = _masks()
    assert not np.allclose(masks["passive_1"].next(MessageKind.ACTIVATION, (8,)), masks["passive_1"].next(MessageKind.ACTIVATION, (8,)))


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({"passive_2": "00" * 32}, r"keys for \['passive_2'\], expected \['passive_2', 'passive_3'\]"),
        ({"passive_2": "00" * 32, "passive_3": "00" * 32, "active": "00" * 32}, "expected"),
        ({"passive_2": "00" * 32, "passive_3": "00" * 16}, "not 32-byte keys for \\['passive_3'\\]"),
        ({"passive_2": "zz" * 32, "passive_3": "00" * 32}, "non-hexadecimal"),
    ],
)
def test_malformed_mask_keys_are_refused_with_one_line(keys: dict, reason: str) -> None:
    with pytest.raises(ProtocolError, match=f"^passive_1 rejected the pairwise mask keys from coordinator: .*{reason}"):
        read_pair_keys(json.dumps(keys).encode(), "passive_1", PASSIVES, "coordinator")
    with pytest.raises(ProtocolError, match="rejected the pairwise mask keys"):
        read_pair_keys(b"\xff not json", "passive_1", PASSIVES, "coordinator")


def _federations(masks: str, seed: int = 3):  # type: ignore[no-untyped-def]
    common = {"parties": {"passive": 2, "split": "even"}, "model": {"top": "sum", "bottom_hidden": [4]},
              "train": {"lr": 0.5, "batch_size": 6, "seed": seed}}
    dataset = random_dataset(24, 6, 8, 3, seed)
    blocks = [np.arange(4), np.arange(4, 8)]
    protection = {"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": 0, "activation_masks": masks}
    return build_federation(config(**common, protection=protection), dataset, blocks)


def _weights(federation) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return [p.detach().double().numpy().copy() for party in federation.passives for p in party.model.parameters()]


def test_a_masked_run_trains_as_an_unmasked_one() -> None:
    masked, unmasked = _federations("pairwise"), _federations("none")
    assert all(party.wire.masks is not None for party in masked.passives)
    assert all(party.wire.masks is None for party in unmasked.passives)
    for step, rows in enumerate((np.arange(6), np.arange(6, 12), np.arange(12, 18))):
        masked.train_batch(step, rows)
        unmasked.train_batch(step, rows)
    for a, b in zip(_weights(masked), _weights(unmasked), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(masked.evaluate(6, 4, step=3), unmasked.evaluate(6, 4, step=3))
    assert masked.channel.stats.to_dict()["bytes_by_kind"]["mask_keys"] > 0


def test_a_passive_out_of_step_stops_the_run_with_one_line() -> None:
    federation = _federations("pairwise")
    federation.train_batch(0, np.arange(6))
    federation.passives[0].wire.masks.next(MessageKind.ACTIVATION, (1,))  # passive_1 skips a message number: its next mask pairs with nothing
    with pytest.raises(ProtocolError, match=r"^active: the decrypted sum of the passives' activations reaches .* their pairwise masks did not cancel"):
        federation.train_batch(1, np.arange(6, 12))


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"model": {"top": "trainable"}}, "they need model.top = 'sum'"),
        ({"parties": {"passive": 1}}, "they need at least 2 passive parties"),
        ({"protection": {"scheme": "ckks", "key_holder": "active", "activation_masks": "pairwise"}}, "they need scheme = .ckks. with key_holder = .coordinator."),
        ({"parties": {"passive": 40, "split": "even"}}, "with 40 passives a masked activation reaches"),
    ],
)
def test_settings_where_the_masks_cannot_cancel_are_refused_or_left_unmasked(sections: dict, expected: str) -> None:
    raw = {"parties": {"passive": 2}, "protection": {"scheme": "ckks", "key_holder": "coordinator", "activation_masks": "pairwise"}}
    for name, section in sections.items():
        raw[name] = {**raw.get(name, {}), **section}
    with pytest.raises(ConfigError, match=f"protection.activation_masks = 'pairwise': {expected}"):
        validate_config(raw)
    raw["protection"]["activation_masks"] = "auto"
    auto = validate_config(raw)
    assert not pairwise_activation_masks(auto.protection, auto.model.top, auto.parties.passive)


def _steering_run(layer: str, masks: str, monkeypatch: pytest.MonkeyPatch, own_bytes_always: bool = True):  # type: ignore[no-untyped-def]
    """A malicious active party that sends passive_2 zero gradients and passive_1 one probe entry (sample j = 0, output
    0) between sweeps of zero gradients, as different bytes to each (it ignores the one-ciphertext rule; with
    ``own_bytes_always`` false only at the probe); returns ``(data, run)`` where ``run()`` gives the change of the
    decrypted sums' output 0 over the training samples."""
    from dataclasses import replace

    from securevfl.schemes.label_private import sealed as sealed_module
    from securevfl.schemes.label_private import wires

    n, batch, lr, probe = 32, 8, 0.5, 0.4
    data = random_dataset(n, 8, 8, 3, seed=11)
    federation = build_federation(
        config(parties={"passive": 2, "split": "even"}, model={"top": "sum", "bottom_hidden": []},
               train={"lr": lr, "batch_size": batch, "seed": 1},
               protection={"scheme": "ckks", "key_holder": "coordinator", "passive_layer": layer, "activation_masks": masks}),
        data, [np.arange(4), np.arange(4, 8)],
    )
    active_wire = federation.active.wire
    honest_link, own_bytes = active_wire.link, replace(active_wire.link, gradient_agreement=False)
    active_wire.link = own_bytes if own_bytes_always else honest_link
    steering = {"probe": False}
    seen: dict[str, np.ndarray] = {}
    wire_class = sealed_module.SealedActiveWire if layer == "sealed" else wires.BlindActiveWire
    honest_combined = wire_class._combined

    def combined(self, party, received, step, what):  # type: ignore[no-untyped-def]
        out = honest_combined(self, party, received, step, what)
        seen["S"] = out.numpy().astype(np.float64)
        return out

    def steered(self, party, delta):  # type: ignore[no-untyped-def]
        to_passive_1, to_passive_2 = np.zeros_like(delta), np.zeros_like(delta)
        if steering["probe"]:
            to_passive_1[0, 0] = probe
        return [to_passive_1, to_passive_2]

    monkeypatch.setattr(wire_class, "_combined", combined)
    monkeypatch.setattr(wires.BlindActiveWire, "_passive_gradients", steered)

    def sweep(first_step: int) -> np.ndarray:
        sums = np.zeros((n, 3))
        for k, start in enumerate(range(0, n, batch)):
            federation.train_batch(first_step + k, np.arange(start, start + batch))
            sums[start : start + batch] = seen["S"]
        return sums

    def run() -> np.ndarray:
        before = sweep(0)
        steering["probe"] = True
        active_wire.link = own_bytes
        federation.train_batch(4, np.arange(batch))
        steering["probe"] = False
        active_wire.link = own_bytes if own_bytes_always else honest_link
        return -(sweep(5) - before)[:, 0]  # = lr * probe * (<x1_j, x1_i> + 1)

    return data, run


@pytest.mark.parametrize("layer", ["open", "sealed"])
def test_gradient_steering_separates_one_passives_features_from_the_sums_unless_the_coordinator_checks_the_gradients(
    layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gradient steering (red-team pass, 2026-11-27). Under the sum top every passive should train on the same ``delta``.
    An active party that sends one passive alone a probe moves that passive's model alone, and the difference of the
    honest sums before and after is ``-lr * delta * (<x1_j, x1_i> + 1)``: a row of passive_1's private feature Gram
    matrix, apart from passive_2's. Pairwise masks alone do not stop it (``activation_masks = "none"`` here gives the
    same sums); with them the passives report their gradients' digests and the coordinator refuses the active party's
    next request when they differ, before any sum after the steered update is decrypted."""
    data, run = _steering_run(layer, "none", monkeypatch)
    moved = run()
    x1, x2 = data.x_train[:, :4].astype(np.float64), data.x_train[:, 4:].astype(np.float64)
    own, other = np.corrcoef(moved, x1 @ x1[0])[0, 1], np.corrcoef(moved, x2 @ x2[0])[0, 1]
    assert own > (0.99 if layer == "open" else 0.9) and abs(other) < 0.5

    _, run = _steering_run(layer, "pairwise", monkeypatch)
    # it sends each passive its own ciphertext from the first step on (even two encryptions of zero differ): stopped there
    with pytest.raises(ProtocolError, match=r"coordinator refused its decrypt_request \(step 1\): the passives received different "
                       r"gradients at step 0 \(passive_1 vs passive_2\).*gradient steering"):
        run()
    # it follows the rule but at the probe: stopped at the next request, before any sum after the probe decrypts
    _, run = _steering_run(layer, "pairwise", monkeypatch, own_bytes_always=False)
    with pytest.raises(ProtocolError, match=r"refused its decrypt_request \(step 5\): the passives received different gradients at step 4"):
        run()


def test_an_honest_sum_a_little_past_its_bound_trains_on_and_mask_sized_values_stop() -> None:
    """Sealed activations may outgrow protection.activation_bound during training (not checked, as without masks): a
    sum a little past its bound is no sign of masks out of step, values of the order of the mask are (red-team F2)."""
    from securevfl.schemes.label_private.wires import check_masks_cancelled

    check_masks_cancelled(np.array([[6.11, -5.0]]), 4.2, 16384.0, 16384.0, "active")  # the red team's honest sealed run
    check_masks_cancelled(np.array([[1e9]]), 4.2, 0.0, 16384.0, "active")  # no masks: nothing to check
    with pytest.raises(ProtocolError, match="did not cancel"):
        check_masks_cancelled(np.array([[4.2 + 4096.5]]), 4.2, 16384.0, 16384.0, "active")


def test_the_coordinator_waits_for_every_passives_digest_and_refuses_differing_ones() -> None:
    """GradientAgreement: an active request at step t waits until every passive's digest of every step of the attempt
    before t is in; equal digests pass (and are forgotten), differing ones name the step and the passives."""
    from securevfl.protocols import Message
    from securevfl.protocols.gradient_agreement import GradientAgreement, GradientsDiffer, gradient_digest

    def digest(sender: str, step: int, payload: bytes) -> Message:
        gradient = Message(MessageKind.GRADIENT, "active", sender, step, payload, codec="ckks", meta={"scale": 64.0})
        return Message(MessageKind.GRADIENT_DIGEST, sender, "coordinator", step, gradient_digest([gradient]), codec="key")

    agreement = GradientAgreement(("passive_1", "passive_2"))
    assert agreement.ready_for(3)  # the attempt's first request: no gradient before it
    agreement.record(digest("passive_1", 3, b"same bytes"))
    assert not agreement.ready_for(4)  # passive_2's digest of step 3 is still on its way
    agreement.record(digest("passive_2", 3, b"same bytes"))
    assert agreement.ready_for(4) and agreement.verified_through == 3
    agreement.record(digest("passive_1", 4, b"bytes for passive_1"))
    agreement.record(digest("passive_2", 4, b"bytes for passive_2"))
    with pytest.raises(GradientsDiffer, match=r"different gradients at step 4 \(passive_1 vs passive_2\)"):
        agreement.ready_for(5)
    with pytest.raises(GradientsDiffer, match=r"different gradients at step 4"):  # refused for good
        agreement.ready_for(6)

    # the active party writes the step labels: out-of-step digests, late requests and unchecked early steps are deviations
    lagging = GradientAgreement(("passive_1", "passive_2"))
    assert lagging.ready_for(3)
    lagging.record(digest("passive_1", 3, b"x"))
    lagging.record(digest("passive_2", 3, b"x"))
    assert lagging.ready_for(4)
    lagging.record(digest("passive_1", 3, b"probe, labelled with a checked step"))
    with pytest.raises(GradientsDiffer, match="passive_1 reported a second gradient for step 3"):
        lagging.ready_for(5)
    late = GradientAgreement(("passive_1", "passive_2"))  # a request labelled with the steered step itself, or earlier
    assert late.ready_for(4)
    late.record(digest("passive_1", 4, b"a"))
    assert not late.ready_for(4)  # passive_2's report of step 4 is awaited whatever the label
    late.record(digest("passive_2", 4, b"b"))
    with pytest.raises(GradientsDiffer, match="different gradients at step 4"):
        late.ready_for(4)
    silent = GradientAgreement(("passive_1", "passive_2"))  # steered steps 0 and 1 without a request in between
    for step, payloads in ((0, (b"a", b"b")), (1, (b"c", b"c"))):
        silent.record(digest("passive_1", step, payloads[0]))
        silent.record(digest("passive_2", step, payloads[1]))
    with pytest.raises(GradientsDiffer, match="different gradients at step 0"):
        silent.ready_for(2)
    forged = GradientAgreement(("passive_1", "passive_2"))
    forged.record(Message(MessageKind.GRADIENT_DIGEST, "active", "coordinator", 5, bytes(32), codec="key"))
    with pytest.raises(GradientsDiffer, match="a gradient digest came from 'active'"):
        forged.ready_for(6)
    other_scale = Message(MessageKind.GRADIENT, "active", "passive_1", 4, b"same bytes", codec="ckks", meta={"scale": 32.0})
    same = Message(MessageKind.GRADIENT, "active", "passive_1", 4, b"same bytes", codec="ckks", meta={"scale": 64.0})
    assert gradient_digest([other_scale]) != gradient_digest([same])  # the announced scale counts too


@pytest.mark.parametrize(
    ("model", "protection", "holds"),
    [
        ({"top": "sum", "bottom_hidden": [32]}, {}, True),  # one gradient packing for every passive: checked
        ({"top": "sum", "bottom_hidden": []}, {"passive_layer": "sealed"}, True),  # one sealed stride for all
        ({"top": "sum", "bottom_hidden": []}, {}, True),  # one-layer open bottoms: one shared gradient stride for all
        ({"top": "sum", "bottom_hidden": [32]}, {"activation_masks": "none"}, False),
        ({"top": "trainable"}, {}, False),
    ],
)
def test_what_the_activations_promise_against_a_malicious_active_party(model: dict, protection: dict, holds: bool | None) -> None:
    from securevfl.promises import promises

    config = validate_config({"parties": {"passive": 2}, "model": model,
                              "protection": {"scheme": "ckks", "key_holder": "coordinator", **protection}})
    rows = {(row["asset"], row["adversary"]): row for row in promises(config)}
    assert rows[("activations", "malicious active")]["holds"] is holds


@pytest.mark.parametrize("counts", [(1, 7), (1, 40), (40, 3, 9)])
def test_one_layer_bottoms_of_any_feature_counts_share_one_gradient_packing_and_train_like_plaintext(counts: tuple[int, ...]) -> None:
    """One-layer open bottoms pack their gradient in the stride of G^T @ [X | 1], which depends on the feature count
    (at batch 8: 16 slots for 1 to 15 features, 64 for 40). With the masks every passive gets the widest
    (SharedGradientPlan), so one ciphertext serves all and the coordinator checks it (before 2026-11-27 the check was
    off for 1 and 40 features and steering worked there); a step still updates every model like the plaintext step."""
    from securevfl.schemes.label_private.plan import SharedGradientPlan

    common = {"parties": {"passive": len(counts), "split": "even"}, "model": {"top": "sum", "bottom_hidden": []},
              "train": {"lr": 0.5, "batch_size": 8, "seed": 3}}
    dataset = random_dataset(16, 4, sum(counts), 3, seed=0)
    edges = np.cumsum((0, *counts))
    blocks = [np.arange(edges[k], edges[k + 1]) for k in range(len(counts))]
    plain = build_federation(config(**common), dataset, blocks)
    blind = build_federation(config(**common, protection={"scheme": "ckks", "key_holder": "coordinator", "preset": "compute",
                                                          "flooding_bits": 0, "activation_masks": "pairwise"}), dataset, blocks)
    assert all(party.wire.link.gradient_agreement for party in blind.passives)
    shared = {party.wire.plan.feature_major_stride(0) for party in blind.passives}
    assert len(shared) == 1 and all(isinstance(party.wire.plan, SharedGradientPlan) for party in blind.passives) == (counts != (1, 7))
    ids = np.arange(8)
    assert abs(plain.train_batch(0, ids) - blind.train_batch(0, ids)) < 1e-5
    for a, b in zip(plain.passives, blind.passives, strict=True):
        for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
            torch.testing.assert_close(pb.detach(), pa.detach(), rtol=0, atol=1e-4)
    rows = {(row["asset"], row["adversary"]): row for row in promises_of(common)}
    assert rows[("activations", "malicious active")]["holds"] is True


def promises_of(sections: dict) -> list[dict]:
    from securevfl.promises import promises

    return promises(validate_config({**sections, "protection": {"scheme": "ckks", "key_holder": "coordinator"}}))
