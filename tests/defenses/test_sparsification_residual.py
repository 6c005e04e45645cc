"""Sparsification's residual variants: by batch row (default), by sample id, none.

Each variant is checked against numbers worked out by hand for a three-step sequence (two
epochs, reshuffled), against a dense reference written independently (an N x d residual indexed
by sample id), through a checkpoint round trip, and end to end in a training run that is
interrupted and resumed.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from securevfl.config import validate_config
from securevfl.defenses import MessageContext, Sparsification, SparsificationConfig, kept_entries
from securevfl.defenses.registry import parse_defense_config
from securevfl.training import run_training

# Three messages of 2 samples x 2 features, drop_rate 0.5 with top-k: 2 of 4 entries are sent.
# Epoch 1 has batches (0, 1) and (2, 3); epoch 2 starts with the reshuffled batch (1, 0).
STEPS: list[tuple[tuple[int, ...], list[list[float]]]] = [
    ((0, 1), [[4.0, 1.0], [3.0, 2.0]]),
    ((2, 3), [[1.0, 0.5], [0.25, 5.0]]),
    ((1, 0), [[0.25, 0.5], [0.75, 1.5]]),
]

# Worked by hand. Step 0 (all variants): send 4 and 3; withhold [0, 1] (sample 0), [0, 2] (sample 1).
BY_HAND: dict[str, list[list[list[float]]]] = {
    # row: step 1 adds the withheld rows to batch rows 0 and 1, i.e. to samples 2 and 3:
    #   [[1, 1.5], [0.25, 7]] -> send 7, 1.5; withhold [1, 0], [0.25, 0] (now by row, not sample)
    # step 2: [[0.25, 0.5] + [1, 0], [0.75, 1.5] + [0.25, 0]] = [[1.25, 0.5], [1, 1.5]] -> send 1.5, 1.25
    "row": [[[4, 0], [3, 0]], [[0, 1.5], [0, 7]], [[1.25, 0], [0, 1.5]]],
    # sample: samples 2 and 3 have nothing withheld: send 5 and 1; samples 0 and 1 keep theirs.
    # step 2: sample 1 gets [0, 2] -> [0.25, 2.5], sample 0 gets [0, 1] -> [0.75, 2.5]: send both 2.5s
    "sample": [[[4, 0], [3, 0]], [[1, 0], [0, 5]], [[0, 2.5], [0, 2.5]]],
    # none: each message alone
    "none": [[[4, 0], [3, 0]], [[1, 0], [0, 5]], [[0, 0], [0.75, 1.5]]],
}
# What is still withheld after step 2, per sample (row: per batch row).
LEFT_BY_HAND = {
    "row": np.array([[0, 0.5], [1.0, 0]]),
    "sample": {0: [0.75, 0], 1: [0.25, 0], 2: [0, 0.5], 3: [0.25, 0]},
}


def _ctx(step: int, ids: tuple[int, ...] | None, rows: int | None = None) -> MessageContext:
    rows = len(ids) if ids is not None else rows or 0
    return MessageContext(kind="gradient", sender="active", receiver="passive_1", step=step, rows=rows, sample_ids=ids)


def _defense(seed: int = 0, **config: Any) -> Sparsification:
    return Sparsification(SparsificationConfig(**config), np.random.default_rng(seed))


@pytest.mark.parametrize("residual", ["row", "sample", "none"])
def test_each_variant_sends_what_the_hand_computation_says(residual: str) -> None:
    defense = _defense(drop_rate=0.5, residual=residual)
    for step, ((ids, values), want) in enumerate(zip(STEPS, BY_HAND[residual], strict=True)):
        sent = defense.apply(np.array(values), _ctx(step, ids))
        np.testing.assert_array_equal(sent, np.array(want, dtype=float))
    if residual == "row":
        np.testing.assert_array_equal(defense.residual("active", "passive_1"), LEFT_BY_HAND["row"])
    elif residual == "sample":
        left = LEFT_BY_HAND["sample"]
        assert defense.residual_ids("active", "passive_1") == sorted(left)
        np.testing.assert_array_equal(defense.residual("active", "passive_1"), np.array([left[i] for i in sorted(left)]))
    else:
        assert defense.residual("active", "passive_1") is None


def _dense_reference(
    batches: list[tuple[np.ndarray, np.ndarray]], n_samples: int, drop_rate: float, momentum: float | None
) -> list[np.ndarray]:
    """Per-sample DGC written from the definition: dense N x d residual (and velocity), top-k per message."""
    width = batches[0][1].shape[1]
    residual = np.zeros((n_samples, width))
    velocity = np.zeros((n_samples, width))
    sent_all = []
    for ids, values in batches:
        if momentum is None:
            accumulated = residual[ids] + values
        else:
            velocity[ids] = momentum * velocity[ids] + values
            accumulated = residual[ids] + velocity[ids]
        k = kept_entries(values.size, drop_rate)
        order = sorted(range(values.size), key=lambda flat: (-abs(accumulated.flat[flat]), flat))
        keep = np.zeros(values.size, dtype=bool)
        keep[order[:k]] = True
        keep = keep.reshape(values.shape)
        sent_all.append(np.where(keep, accumulated, 0.0))
        residual[ids] = np.where(keep, 0.0, accumulated)
        if momentum is not None:
            velocity[ids] = np.where(keep, 0.0, velocity[ids])
    return sent_all


def _epochs(n_samples: int, batch: int, epochs: int, width: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled batches over several epochs (the last batch of an epoch shorter), random gradients."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        order = rng.permutation(n_samples)
        for start in range(0, n_samples, batch):
            ids = order[start : start + batch]
            out.append((ids, rng.normal(size=(len(ids), width))))
    return out


@pytest.mark.parametrize("momentum", [None, 0.7])
def test_by_sample_matches_a_dense_per_sample_reference(momentum: float | None) -> None:
    batches = _epochs(n_samples=23, batch=5, epochs=3, width=3, seed=4)
    extra = {} if momentum is None else {"momentum_correction": True, "momentum": momentum}
    defense = _defense(drop_rate=0.8, residual="sample", **extra)
    want = _dense_reference(batches, 23, 0.8, momentum)
    for step, ((ids, values), expected) in enumerate(zip(batches, want, strict=True)):
        np.testing.assert_allclose(defense.apply(values, _ctx(step, tuple(ids))), expected, rtol=0, atol=1e-12)


def test_by_sample_conserves_each_samples_mass() -> None:
    """Everything sent for a sample plus what it still has withheld is the sum of its gradients."""
    batches = _epochs(n_samples=17, batch=4, epochs=4, width=2, seed=9)
    defense = _defense(drop_rate=0.9, residual="sample", selection="random")
    total_in, total_sent = np.zeros((17, 2)), np.zeros((17, 2))
    for step, (ids, values) in enumerate(batches):
        total_in[ids] += values
        total_sent[ids] += defense.apply(values, _ctx(step, tuple(ids)))
    left = defense.residual("active", "passive_1")
    assert defense.residual_ids("active", "passive_1") == list(range(17))
    np.testing.assert_allclose(total_sent + left, total_in, rtol=0, atol=1e-12)


@pytest.mark.parametrize("extra", [{}, {"momentum_correction": True, "momentum": 0.5}, {"selection": "random"}])
def test_by_sample_state_round_trip_continues_exactly(extra: dict[str, Any]) -> None:
    batches = _epochs(n_samples=11, batch=4, epochs=3, width=3, seed=2)
    half = len(batches) // 2
    original = _defense(3, drop_rate=0.7, residual="sample", **extra)
    for step, (ids, values) in enumerate(batches[:half]):
        original.apply(values, _ctx(step, tuple(ids)))
    saved = pickle.loads(pickle.dumps(original.state_dict()))
    expected = [original.apply(values, _ctx(half + i, tuple(ids))) for i, (ids, values) in enumerate(batches[half:])]
    resumed = _defense(99, drop_rate=0.7, residual="sample", **extra)
    resumed.load_state_dict(saved)
    for i, ((ids, values), want) in enumerate(zip(batches[half:], expected, strict=True)):
        np.testing.assert_array_equal(resumed.apply(values, _ctx(half + i, tuple(ids))), want)


def test_a_state_of_one_residual_variant_is_refused_by_another() -> None:
    by_row, by_sample = _defense(drop_rate=0.5), _defense(drop_rate=0.5, residual="sample")
    by_row.apply(np.array(STEPS[0][1]), _ctx(0, STEPS[0][0]))
    by_sample.apply(np.array(STEPS[0][1]), _ctx(0, STEPS[0][0]))
    with pytest.raises(ValueError, match="disagree on residual"):
        _defense(drop_rate=0.5, residual="sample").load_state_dict(by_row.state_dict())
    with pytest.raises(ValueError, match="disagree on residual"):
        _defense(drop_rate=0.5).load_state_dict(by_sample.state_dict())


def test_by_sample_needs_sample_ids() -> None:
    with pytest.raises(ValueError, match="needs the sample ids"):
        _defense(drop_rate=0.5, residual="sample").apply(np.ones((2, 2)), _ctx(0, None, rows=2))
    with pytest.raises(ValueError, match="same sample twice"):
        _defense(drop_rate=0.5, residual="sample").apply(np.ones((2, 2)), _ctx(0, (4, 4)))


def test_residual_and_the_earlier_accumulate_flag_agree() -> None:
    assert SparsificationConfig(drop_rate=0.5).residual == "row"  # the default: earlier results reproduce
    assert SparsificationConfig(drop_rate=0.5, accumulate=False).residual == "none"
    assert SparsificationConfig(drop_rate=0.5, residual="none").accumulate is False
    assert SparsificationConfig(drop_rate=0.5, residual="sample").accumulate is True
    with pytest.raises(ValidationError, match="contradicts accumulate"):
        SparsificationConfig(drop_rate=0.5, residual="sample", accumulate=False)
    with pytest.raises(ValidationError, match="needs accumulate = true"):
        SparsificationConfig(drop_rate=0.5, residual="none", momentum_correction=True)
    # a config stored before `residual` existed reads as the row variant and dumps both, consistently
    stored = {"kind": "sparsification", "drop_rate": 0.9, "accumulate": True}
    assert parse_defense_config(stored).model_dump(mode="json")["residual"] == "row"
    labels = {r: SparsificationConfig(drop_rate=0.9, residual=r).label() for r in ("row", "sample", "none")}
    assert labels == {
        "row": "sparsification(drop_rate=0.9, gradient, pre_encryption)",
        "sample": "sparsification(drop_rate=0.9, residual=sample, gradient, pre_encryption)",
        "none": "sparsification(drop_rate=0.9, residual=none, gradient, pre_encryption)",
    }


def _digits_config(residual: str) -> Any:
    return validate_config({
        "data": {"name": "digits", "train_limit": 200, "test_limit": 50},
        "train": {"epochs": 2, "lr": 0.05, "batch_size": 64, "seed": 5},
        "defense": [{"kind": "sparsification", "drop_rate": 0.9, "residual": residual}],
    })


@pytest.mark.slow
def test_training_with_per_sample_residuals_resumes_like_an_uninterrupted_run(tmp_path: Any) -> None:
    """The active party hands the batch's sample ids to the defense; the checkpoint carries the per-sample state."""
    uninterrupted = run_training(_digits_config("sample"))
    by_row = run_training(_digits_config("row"))
    assert uninterrupted["history"] != by_row["history"]  # the variant changes what is sent

    class Stop(Exception):
        pass

    def stop(record: Any) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_training(_digits_config("sample"), tmp_path, on_epoch_end=[stop])
    resumed = run_training(_digits_config("sample"), tmp_path, resume=True)
    assert resumed["history"] == uninterrupted["history"]
