"""protection.passive_layer = "sealed": the passive's single Linear exists only under the key holder's key.

- one sealed step moves the (test-decrypted) weights like the plaintext step: exactly without
  the key holder's flooding, within its noise with it;
- the passive holds no plaintext weights after setup and no plaintext value from the protocol;
- gradient inversion is infeasible, and the key holder refuses a sealed passive's decryption;
- configurations the sealed layer cannot run are refused at load time with one line;
- on digits it trains to within a few points of the open variant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from securevfl.config import load_config, validate_config
from securevfl.crypto import get_preset
from securevfl.errors import ConfigError
from securevfl.federation import build_federation
from securevfl.protocols import ProtocolError
from securevfl.protocols.errors import PayloadRangeError
from securevfl.schemes.label_private.sealed import SealedLinear, sealed_layer_refusal
from securevfl.training import run_training
from securevfl.models import linear_stack
from tests.helpers import config, random_dataset

DIGITS_ACTIVE = Path(__file__).resolve().parents[1] / "examples" / "digits_ckks_active.toml"
FEATURES = 4


def _sealed(key_holder: str, **protection: object) -> dict:
    return {"scheme": "ckks", "key_holder": key_holder, "preset": "compute", "passive_layer": "sealed", **protection}


TRAINABLE = {"top": "trainable", "bottom_hidden": [], "bottom_output": 4, "top_hidden": [5], "bottom_output_activation": "none"}


def _pair(key_holder: str, flooding_bits: int, seed: int = 3, batch: int = 6, lr: float = 0.5, top: str = "sum"):  # type: ignore[no-untyped-def]
    common = {
        "parties": {"passive": 2, "split": "even"},
        "model": TRAINABLE if top == "trainable" else {"top": "sum", "bottom_hidden": []},
        "train": {"lr": lr, "batch_size": batch, "seed": seed},
    }
    dataset = random_dataset(24, 6, 2 * FEATURES, 3, seed)
    blocks = [np.arange(FEATURES), np.arange(FEATURES, 2 * FEATURES)]
    plain = build_federation(config(**common), dataset, blocks)
    sealed = build_federation(config(**common, protection=_sealed(key_holder, flooding_bits=flooding_bits)), dataset, blocks)
    return plain, sealed


def _plain_weights(federation) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    out = []
    for party in federation.passives:
        (linear, _), = linear_stack(party.model)
        out.append(np.hstack([linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()[:, None]]))
    return out


def _sealed_weights(federation) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """The test (not any party) decrypts the sealed weights with the key holder's secret key (kept amplified)."""
    from securevfl.schemes.label_private.precision import AMPLIFICATION

    secret = federation.key_holder.service.keyring if federation.key_holder is not None else None
    assert secret is not None
    return [party.model.weights.decrypt(secret) / AMPLIFICATION for party in federation.passives]


@pytest.mark.parametrize("top", ["sum", "trainable"])
@pytest.mark.parametrize("key_holder", ["active", "coordinator"])
def test_one_sealed_step_updates_the_weights_like_the_plaintext_step(key_holder: str, top: str) -> None:
    plain, sealed = _pair(key_holder, flooding_bits=0, top=top)
    before = _plain_weights(plain)
    for a, b in zip(before, _sealed_weights(sealed), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)  # same seed: the same initial weights, sealed
    ids = np.array([0, 3, 5, 8, 13, 21])
    plain_loss, sealed_loss = plain.train_batch(0, ids), sealed.train_batch(0, ids)
    assert abs(plain_loss - sealed_loss) < 1e-5
    moved = 0.0
    for old, a, b in zip(before, _plain_weights(plain), _sealed_weights(sealed), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
        moved = max(moved, float(np.abs(a - old).max()))
    assert moved > 1e-2  # the step really moved the weights being compared
    assert all(party.wire.refreshes == 1 for party in sealed.passives)
    # a short last batch pads the product with zero rows, which must not move the bias
    for step, short in enumerate((np.array([1, 2, 4]), np.array([6, 7, 9, 10, 11])), start=1):
        plain.train_batch(step, short)
        sealed.train_batch(step, short)
    for a, b in zip(_plain_weights(plain), _sealed_weights(sealed), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    for a, b in zip(plain.active.top.parameters(), sealed.active.top.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    labels = sealed.evaluate(6, 4, step=2)  # evaluation runs the encrypted forward, in chunks of the batch
    assert labels == plain.evaluate(6, 4, step=2)


@pytest.mark.parametrize("top", ["sum", "trainable"])
@pytest.mark.parametrize("key_holder", ["active", "coordinator"])
def test_with_the_key_holders_flooding_the_step_is_close_but_noisy(key_holder: str, top: str) -> None:
    """Flooding perturbs each refreshed value by N(0, sigma^2) (and, coordinator, the decrypted combination): 6 sigma at most."""
    plain, sealed = _pair(key_holder, flooding_bits=30, lr=0.1, top=top)
    ids = np.array([0, 3, 5, 8, 13, 21])
    plain.train_batch(0, ids)
    sealed.train_batch(0, ids)
    sigmas = sealed.key_holder.service.flooding_sigmas
    error = max(np.abs(b - a).max() for a, b in zip(_plain_weights(plain), _sealed_weights(sealed), strict=True))
    assert 1e-5 < error <= 6 * sum(sigmas), (error, sigmas)


def test_the_passive_holds_no_plaintext_weights_after_setup() -> None:
    _, sealed = _pair("active", flooding_bits=0)
    for party in sealed.passives:
        assert isinstance(party.model, SealedLinear)
        assert list(party.model.parameters()) == []
        assert all(p.numel() == 0 for group in party.optimizer.param_groups for p in group["params"])
        assert party.wire._linear is None
        with pytest.raises(ProtocolError, match="no plaintext weights"):
            party.model(torch.zeros(1, FEATURES))


@pytest.mark.parametrize("top", ["sum", "trainable"])
@pytest.mark.parametrize("key_holder", ["active", "coordinator"])
def test_the_passive_sees_no_plaintext_and_the_key_holder_only_masks(key_holder: str, top: str) -> None:
    _, sealed = _pair(key_holder, flooding_bits=30, top=top)
    sealed.train_batch(0, np.arange(6))
    sealed.train_batch(1, np.arange(6, 12))
    sealed.evaluate(6, 4, step=1)
    audits = sealed.audits()
    for name in ("passive_1", "passive_2"):
        assert audits[name].kinds() == set(), f"{name} held a plaintext value"
    active = audits["active"]
    combined = {"activation_sum", "eval_activation_sum"} if top == "sum" else {
        "first_layer_preactivation", "eval_first_layer_preactivation", "top_weight_gradient"
    }
    assert active.kinds(masked=False) == combined
    holder = audits["coordinator" if key_holder == "coordinator" else "active"]
    served = [s for s in holder.sightings() if s.source in ("passive_1", "passive_2")]
    refreshed = {"sealed_weights"} | ({"sealed_activation", "eval_sealed_activation"} if top == "trainable" else set())
    assert served and all(s.masked for s in served) and {s.kind for s in served} == refreshed
    assert sealed.key_holder.service.refusals == []


def test_gradient_inversion_is_infeasible() -> None:
    cfg = config(
        parties={"passive": 2, "split": "even"},
        model={"top": "sum", "bottom_hidden": []},
        train={"batch_size": 6},
        protection=_sealed("active"),
        attack={"kind": "gradient_inversion"},
    )
    federation = build_federation(cfg, random_dataset(24, 6, 2 * FEATURES, 3, 0), [np.arange(FEATURES), np.arange(FEATURES, 2 * FEATURES)])
    setup = federation.attack_setup
    assert setup.feasible is False and setup.attack is None
    assert "no parameter gradient" in str(setup.infeasible_reason)


@pytest.mark.parametrize("key_holder", ["active", "coordinator"])
def test_the_key_holder_refuses_a_decryption_for_a_sealed_passive(key_holder: str) -> None:
    _, sealed = _pair(key_holder, flooding_bits=30)
    passive = sealed.passives[0]
    with pytest.raises(ProtocolError):
        passive.wire.client.reveal(passive.model.weights, 0, "parameter_gradient", per_sample=False)
    refusals = sealed.key_holder.service.refusals
    assert len(refusals) == 1 and "passive_1" in refusals[0] and "decrypt" in refusals[0]
    # its refresh is still answered (and only one per step)
    sealed.train_batch(0, np.arange(6))
    assert len(sealed.key_holder.service.refusals) == 1


def _refusal(**sections: object) -> str:
    base = {"parties": {"passive": 2}, "model": {"top": "sum", "bottom_hidden": []}, "protection": _sealed("active")}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}  # type: ignore[dict-item]
    with pytest.raises(ConfigError) as info:
        validate_config(base)
    return str(info.value)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"model": {"bottom_hidden": [8]}}, "exactly one Linear"),
        ({"model": {"bottom_output_activation": "relu"}}, "exactly one Linear"),
        ({"model": {"top": "trainable"}}, "bottom_output_activation = 'none'"),
        ({"train": {"momentum": 0.9}}, "train.momentum"),
        ({"train": {"weight_decay": 1e-4}}, "train.weight_decay"),
        ({"protection": {"scheme": "plain"}}, "needs scheme = 'ckks'"),
        ({"protection": {"key_holder": "receiver", "preset": "transport"}}, "key_holder 'active' or 'coordinator'"),
    ],
)
def test_unsupported_configurations_are_refused_at_load(sections: dict, expected: str) -> None:
    message = _refusal(**sections)
    assert expected in message and "sealed" in message


def test_a_user_bottom_with_an_activation_is_refused() -> None:
    cfg = config(parties={"passive": 2}, model={"top": "sum", "bottom_hidden": []}, protection=_sealed("coordinator"))
    with pytest.raises(ValueError, match="exactly one Linear"):
        cfg.scheme.check_bottom_model(0, torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()))
    cfg.scheme.check_bottom_model(0, torch.nn.Sequential(torch.nn.Linear(4, 3)))
    assert sealed_layer_refusal(linear_stack(torch.nn.Sequential(torch.nn.Linear(4, 3)))) is None


def test_a_checkpoint_of_sealed_weights_cannot_be_resumed() -> None:
    _, sealed = _pair("active", flooding_bits=0)
    state = sealed.passives[0].state_dict()
    assert state["model"]["sealed"].dtype == torch.uint8 and state["model"]["sealed"].numel() > 0
    with pytest.raises(RuntimeError, match="cannot resume"):
        sealed.passives[0].load_state_dict(state)


@pytest.mark.parametrize(
    ("top", "flooding_bits", "epochs", "lr", "floor", "tolerance"),
    [
        # the key holder's flooding perturbs the sealed weights at every refresh. At lr 0.1, where the weights' own
        # steps are small, this catches a flooding sized wrongly: measured over 16 runs (fresh CSPRNG noise each) the
        # sealed layer ends -0.07 +- 0.96 points from the open one (range +-1.4); with the weight refresh flooded for
        # the passives' product bound (2^13 noise units, before 2026-11-27; here flooding_bits = 36 is equivalent) it
        # ended 22.8 points below (at lr 0.5 only 3.6, which the earlier lr-0.8 version of this test let through)
        ("sum", 30, 3, 0.1, 0.6, 0.06),
        ("trainable", 0, 1, 0.5, 0.2, 0.01),  # without flooding the sealed protocol is the open one, up to CKKS error
    ],
)
def test_digits_trains_within_a_few_points_of_the_open_layer(
    tmp_path: Path, top: str, flooding_bits: int, epochs: int, lr: float, floor: float, tolerance: float
) -> None:
    model = [] if top == "sum" else [
        "model.top='trainable'", "model.bottom_output_activation='none'", "model.bottom_output=16", "model.top_hidden=[16]",
    ]
    accuracy = {}
    for layer in ("open", "sealed"):
        overrides = [
            "model.bottom_hidden=[]", f"train.epochs={epochs}", f"train.lr={lr}", "data.train_limit=640", *model,
            f"protection.flooding_bits={flooding_bits}", f"protection.passive_layer={layer!r}", "train.progress=false",
        ]
        result = run_training(load_config(DIGITS_ACTIVE, overrides), tmp_path / layer)
        accuracy[layer] = result["history"][-1]["main_accuracy"]
    assert accuracy["open"] > floor
    assert abs(accuracy["sealed"] - accuracy["open"]) <= tolerance, accuracy


def test_an_attack_scoring_the_passives_activations_is_refused_with_one_line(tmp_path: Path) -> None:
    overrides = [
        "model.bottom_hidden=[]", "protection.passive_layer='sealed'", "attack.kind='activation_inversion'",
        "train.epochs=1", "data.train_limit=64", "train.progress=false",
    ]
    with pytest.raises(ConfigError, match="never holds its activations in plaintext"):
        run_training(load_config(DIGITS_ACTIVE, overrides), tmp_path / "run")


def test_features_whose_initial_activations_pass_the_bound_are_refused_at_setup() -> None:
    """A sealed passive never sees H, and the key holder refuses a refreshed H + R past the bound only when the
    mask lands near its edge: a run that would stop at random. The initial weights are checked on its own samples."""
    dataset = random_dataset(24, 6, 2 * FEATURES, 3, 0)
    dataset = dataset.__class__(**{**dataset.__dict__, "x_train": dataset.x_train * 1000.0, "x_test": dataset.x_test * 1000.0})
    cfg = config(parties={"passive": 2, "split": "even"}, model={"top": "sum", "bottom_hidden": []}, train={"batch_size": 6},
                 protection=_sealed("coordinator"))
    with pytest.raises(PayloadRangeError, match=r"^passive_1 sealed activations: the initial weights give max \|H\| = .* beyond "
                       r"protection.activation_bound = 64; rescale the features or raise the bound$"):
        build_federation(cfg, dataset, [np.arange(FEATURES), np.arange(FEATURES, 2 * FEATURES)])


def test_a_sealed_activation_header_declares_the_public_bound_not_the_features_l1_norm() -> None:
    """``Enc(W) @ X^T`` tracks ``bound(W) x`` the batch's largest feature l1 norm: written in the header it told the
    active party (and the key holder, through the sum's request) each batch's largest feature l1 norm (plan review,
    2026-11-27). The header now carries ``protection.activation_bound`` (plus the pairwise masks' public bound, which
    this coordinator run has), the same for every batch."""
    from securevfl.crypto.wire import decode_tensor_bytes
    from securevfl.protocols import MessageKind

    _, sealed = _pair("coordinator", flooding_bits=0)
    headers: list[float] = []
    original = sealed.channel.send

    def spy(message):  # type: ignore[no-untyped-def]
        if message.kind in (MessageKind.ACTIVATION, MessageKind.EVAL_ACTIVATION) and message.codec == "ckks":
            headers.append(decode_tensor_bytes(bytes(message.payload))[0].value_bound)
        original(message)

    sealed.channel.send = spy
    for party in sealed.passives:  # two batches whose largest feature l1 norms differ by 10 x: the old headers differed
        party.x_train[:6] *= 0.1
    sealed.train_batch(0, np.arange(6))
    sealed.train_batch(1, np.arange(6, 12))
    assert len(headers) == 4 and set(headers) == {64.0 + 16384.0}  # (2 - 1) x mask_half_width


def _measured_noise(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Record, for every request the key holder decrypts, (its public noise bound, its largest imaginary part)."""
    import securevfl.protocols.keyholder as keyholder
    from securevfl.crypto.flooding import flooded_decrypt

    seen: list[tuple[float, float]] = []

    def measuring(tensor, keyring, flooding, noise_bound=None):  # type: ignore[no-untyped-def]
        imaginary = max(float(np.max(np.abs(keyring.decrypt_vector_complex(c).imag))) for c in tensor.ciphertexts)
        seen.append((float(noise_bound), imaginary))
        return flooded_decrypt(tensor, keyring, flooding, noise_bound)

    monkeypatch.setattr(keyholder, "flooded_decrypt", measuring)
    return seen


def test_the_sealed_weights_refresh_is_flooded_for_its_own_tight_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flooding of a weight refresh lands on the weights themselves every step: sized for the passives' product
    bound (2^13 noise units) the sealed layer trained 29 points below the open one on MNIST (2026-11-27). The refresh's
    own noise is two rescales' rounding, whatever the features, so its rule has a bound of 2^10 units, and an honest
    refresh stays well inside it (here with features whose products reach twice the fresh bound elsewhere)."""
    from securevfl.crypto.flooding import noise_unit
    from securevfl.schemes.label_private.policy import SEALED_WEIGHTS_NOISE_UNITS

    seen = _measured_noise(monkeypatch)
    _, sealed = _pair("active", flooding_bits=30)
    sealed.train_batch(0, np.array([0, 3, 5, 8, 13, 21]))
    unit = noise_unit(get_preset("compute"))
    assert [bound for bound, _ in seen] == [SEALED_WEIGHTS_NOISE_UNITS * unit] * 2  # one refresh per passive
    assert all(noise <= bound / 4 for bound, noise in seen), [noise / unit for _, noise in seen]
    assert sealed.key_holder.service.flooding_sigmas == [2.0**15 * SEALED_WEIGHTS_NOISE_UNITS * unit] * 2


def test_the_combined_activations_of_sealed_passives_have_the_product_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over sealed passives the active party's activation sum is a sum of products of the passives' sealed weights
    with their own features, so its noise grows with the features: under the fresh-encryption bound (512) the
    coordinator refused such an honest request and the run stopped (found 2026-11-27 with NUS-WIDE features times 4:
    644 units at step 0). It now has the passives' product bound. With 256 features of scale 12 per passive one step's
    sum measured 497-946 units (rotations without SEAL's key-switching offset, crypto.kernels.rotate): twelve steps make
    it all but certain that one exceeds the old bound."""
    from securevfl.crypto.flooding import noise_unit
    from securevfl.schemes.label_private.policy import FRESH_NOISE_UNITS, PASSIVE_NOISE_UNITS

    seen = _measured_noise(monkeypatch)
    features, steps = 256, 12
    dataset = random_dataset(24, 6, 2 * features, 3, 0)
    dataset = dataset.__class__(**{**dataset.__dict__, "x_train": dataset.x_train * 12.0, "x_test": dataset.x_test * 12.0})
    cfg = config(parties={"passive": 2, "split": "even"}, model={"top": "sum", "bottom_hidden": []},
                 train={"batch_size": 6, "lr": 0.01}, protection=_sealed("coordinator"))
    federation = build_federation(cfg, dataset, [np.arange(features), np.arange(features, 2 * features)])
    for step in range(steps):
        federation.train_batch(step, np.arange(6 * (step % 4), 6 * (step % 4) + 6))
    unit = noise_unit(get_preset("compute"))
    assert federation.key_holder.service.refusals == []
    sums = [noise for bound, noise in seen if bound == PASSIVE_NOISE_UNITS * unit]
    assert len(sums) == steps and len(seen) == 3 * steps  # per step the sum, then one weight refresh per passive
    assert max(sums) > FRESH_NOISE_UNITS * unit  # the old bound would have refused an honest request of this run
