"""The public Python API: the 20-line script of docs/api.md, the data set builders, config
resolution and the typed result, each checked against an independent computation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import securevfl
from securevfl.data import partition_columns
from securevfl.training import run_training

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "progress": False}}


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def _blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return x, (x[:, 0] + x[:, 3] > 0).astype(int)


# --- the documented script ----------------------------------------------------------------------

def _doc_script() -> str:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("## Twenty lines", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/api.md lost its twenty-line script"
    return match.group(1)


def test_the_twenty_line_script_of_the_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    script = _doc_script()
    assert len(script.strip().splitlines()) <= 20
    exec(compile(script, "docs/api.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert accuracy >= 0.75  # the label is a linear rule of three columns
    assert len(re.findall(r"^epoch \d+: loss", out, re.MULTILINE)) == 4


# --- builders: conversion -----------------------------------------------------------------------

def test_float64_int_and_bool_features_become_float32_with_the_same_values() -> None:
    rng = np.random.default_rng(1)
    for x in (rng.normal(size=(20, 3)), rng.integers(-5, 5, size=(20, 3)),
              rng.integers(0, 2, size=(20, 3)).astype(bool)):
        y = np.arange(20) % 2
        data = securevfl.dataset_from_arrays(x[:15], y[:15], x[15:], y[15:], standardize=False)
        assert data.dataset.x_train.dtype == np.float32
        np.testing.assert_array_equal(data.dataset.x_train, x[:15].astype(np.float32))
        np.testing.assert_array_equal(data.dataset.x_test, x[15:].astype(np.float32))


def test_standardising_uses_training_statistics_only() -> None:
    x, y = _blobs()
    data = securevfl.dataset_from_arrays(x[:90] * 1000 + 7, y[:90], x[90:] * 1000 + 7, y[90:])
    raw_train, raw_test = x[:90] * 1000 + 7, x[90:] * 1000 + 7
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    np.testing.assert_allclose(data.dataset.x_train, (raw_train - mean) / std, atol=1e-5)
    np.testing.assert_allclose(data.dataset.x_test, (raw_test - mean) / std, atol=1e-5)


def test_labels_of_any_type_map_to_sorted_classes_including_test_only_values() -> None:
    x = np.zeros((6, 2))
    data = securevfl.dataset_from_arrays(x[:4], ["ok", "fraud", "ok", "fraud"], x[4:],
                                         ["review", "ok"], standardize=False)
    assert data.class_names == ("fraud", "ok", "review")
    assert data.dataset.y_train.tolist() == [1, 0, 1, 0]
    assert data.dataset.y_test.tolist() == [2, 1]
    data = securevfl.dataset_from_arrays(x, np.array([[10], [-3], [7], [10], [-3], [7]]),
                                         x, [7, 7, 7, -3, -3, 10], standardize=False)
    assert data.class_names == ("-3", "7", "10")
    assert data.dataset.y_train.tolist() == [2, 0, 1, 2, 0, 1]
    assert data.dataset.y_train.dtype == np.int64


def test_the_held_out_split_is_stratified_seeded_and_loses_no_row() -> None:
    x, y = _blobs(n=100)
    data = securevfl.dataset_from_arrays(x, y, test_fraction=0.3, split_seed=4, standardize=False)
    d = data.dataset
    assert (d.n_train, d.n_test) == (70, 30)
    rows = np.concatenate([d.x_train, d.x_test])
    order = np.lexsort(rows.T)
    np.testing.assert_array_equal(rows[order], x.astype(np.float32)[np.lexsort(x.astype(np.float32).T)])
    assert abs(d.y_test.mean() - y.mean()) < 0.05  # stratified
    again = securevfl.dataset_from_arrays(x, y, test_fraction=0.3, split_seed=4, standardize=False)
    other = securevfl.dataset_from_arrays(x, y, test_fraction=0.3, split_seed=5, standardize=False)
    np.testing.assert_array_equal(again.dataset.x_test, d.x_test)
    assert not np.array_equal(other.dataset.x_test, d.x_test)


@pytest.mark.parametrize(("x", "y", "message"), [
    (np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0], [0.0, 0.0]]), [0, 1, 0, 1],
     r"x_train has 1 value\(s\) NaN/Inf, the first at row 0, column 'x1'"),
    (np.array([[1.0, 2.0], [np.inf, 3.0], [1.0, 1.0], [0.0, 0.0]]), [0, 1, 0, 1],
     r"first at row 1, column 'x0'"),
    (np.array([[1e39, 2.0], [1.0, 3.0], [1.0, 1.0], [0.0, 0.0]]), [0, 1, 0, 1],
     "beyond the float32 range"),
    (np.array([[1, "a"], [2, "b"], [1, "c"], [0, "d"]], dtype=object), [0, 1, 0, 1],
     r"column 'x1' is not numeric \(holds 'a'\)"),
    (np.array([["1", "a"], ["2", "b"]]), [0, 1], "not numeric"),
    (np.zeros(4), [0, 1, 0, 1], r"must be 2-D \(samples x features\)"),
    (np.zeros((4, 2)), np.eye(4)[:, :2], "one-hot labels need argmax"),
    (np.zeros((4, 2)), [0, 1, 0], r"3 labels in y_train for 4 rows"),
    (np.zeros((4, 2)), [1, 1, 1, 1], r"labels take 1 distinct value\(s\) \['1'\]"),
    (np.zeros((4, 2)), [1.0, np.nan, 0.0, 1.0], r"missing \(NaN/Inf\) label"),
    (np.zeros((4, 2)), np.array([1, "a", 1, "a"], dtype=object), "one sortable type"),
])
def test_unusable_arrays_are_refused_in_one_line(x: np.ndarray, y: object, message: str) -> None:
    with pytest.raises(securevfl.DataError) as exc:
        securevfl.dataset_from_arrays(x, y, x, y, name="mine")
    assert re.search(message, _one_line(exc)), str(exc.value)
    assert str(exc.value).startswith("mine: ")


# --- builders: party assignment ------------------------------------------------------------------

def test_an_assignment_becomes_groups_that_partition_columns_reproduces() -> None:
    x, y = _blobs()
    data = securevfl.dataset_from_arrays(
        x, y, parties={"active": [np.int64(5), 1], "bank": [4, 0], "insurer": [2, 3]})
    assert data.party_names == ("bank", "insurer", "active")  # passives in order, active last
    assert data.parties is not None and data.parties.passive == 2 and data.parties.active_block
    blocks = partition_columns(data.dataset, data.parties)
    assert [b.tolist() for b in blocks] == [[0, 4], [2, 3], [1, 5]]
    assert data.party_columns == {"bank": ("x0", "x4"), "insurer": ("x2", "x3"),
                                  "active": ("x1", "x5")}
    named = securevfl.dataset_from_arrays(x, y, feature_names=list("abcdef"),
                                          parties={"p": ["a", "b", 2], "q": ["d", "e", "f"]})
    assert named.party_columns == {"p": ("a", "b", "c"), "q": ("d", "e", "f")}
    assert not named.parties.active_block  # type: ignore[union-attr]


@pytest.mark.parametrize(("parties", "message"), [
    ({"bank": [0, 1, 2], "insurer": [2, 3, 4, 5]}, "column 'x2' is assigned to both 'bank' and 'insurer'"),
    ({"bank": [0, 1, 2, 1], "insurer": [3, 4, 5]}, "column 'x1' is assigned twice to 'bank'"),
    ({"bank": [0, 1, 9], "insurer": [3, 4, 5]}, "party 'bank' names unknown column 9"),
    ({"bank": [0, 1, True], "insurer": [3, 4, 5]}, "party 'bank' names unknown column True"),
    ({"bank": [0, 1], "insurer": [3, 4, 5]}, r"1 column\(s\) assigned to no party: \['x2'\]"),
    ({"active": [0, 1, 2, 3, 4, 5]}, "at least one passive party"),
    ({"bank": "x0"}, r"party 'bank' needs a list of columns, got 'x0' \(write \['x0'\]"),
    ({"bank": []}, "party 'bank' has no columns"),
    ({}, "non-empty mapping"),
])
def test_a_bad_assignment_is_refused_in_one_line(parties: dict, message: str) -> None:
    x, y = _blobs()
    with pytest.raises(securevfl.DataError) as exc:
        securevfl.dataset_from_arrays(x, y, parties=parties)
    assert re.search(message, _one_line(exc)), str(exc.value)


# --- builders: DataFrame ------------------------------------------------------------------------

pd = pytest.importorskip("pandas")


def _frame(n: int = 80) -> object:
    x, y = _blobs(n)
    frame = pd.DataFrame(x, columns=["age", "income", "claims", "tenure", "balance", "score"])
    frame["owner"] = (x[:, 1] > 0)                      # bool
    frame["children"] = (np.abs(x[:, 2]) * 3).astype(int)  # int
    frame.insert(0, "id", [f"c{i}" for i in range(n)])  # text, never a feature
    frame["default"] = np.where(y == 1, "yes", "no")
    return frame


def test_a_dataframe_with_an_assignment_uses_exactly_the_assigned_columns() -> None:
    frame = _frame()
    parties = {"bank": ["income", "age", "owner"], "insurer": ["claims", "children"],
               "active": ["tenure", "balance", "score"]}
    data = securevfl.dataset_from_dataframe(frame.iloc[:60], "default", frame.iloc[60:],
                                            parties=parties, standardize=False)
    assert data.feature_names == ("age", "income", "claims", "tenure", "balance", "score",
                                  "owner", "children")  # the frame's order
    expected = frame[list(data.feature_names)].to_numpy(dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(data.dataset.x_train, expected[:60])
    np.testing.assert_array_equal(data.dataset.x_test, expected[60:])
    assert data.class_names == ("no", "yes")
    np.testing.assert_array_equal(data.dataset.y_train, (frame["default"][:60] == "yes").to_numpy())
    assert data.party_columns["bank"] == ("age", "income", "owner")


def test_dataframe_problems_name_the_column() -> None:
    frame = _frame()
    cases = [
        ({"label": "nope"}, "no label column 'nope'"),
        ({"label": "default"}, r"column 'id' is not numeric \(dtype"),
        ({"label": "default", "features": ["age", "zzz"]}, r"no feature column\(s\) \['zzz'\]"),
        ({"label": "default", "parties": {"bank": ["age", "agee"]}}, r"unknown column\(s\) \['agee'\]"),
        ({"label": "default", "parties": {"bank": ["age", "default"]}}, "label column 'default' cannot also be a feature"),
        ({"label": "default", "features": ["age", "income"], "parties": {"bank": ["age"]}},
         r"assigned to no party: \['income'\]"),
    ]
    for kwargs, message in cases:
        with pytest.raises(securevfl.DataError) as exc:
            securevfl.dataset_from_dataframe(frame, **kwargs)
        assert re.search(message, _one_line(exc)), str(exc.value)
    frame["cat"] = pd.Categorical(["a", "b"] * 40)
    frame["maybe"] = pd.array([1, None] + [2] * 78, dtype="Int64")
    for column, message in (("cat", r"column 'cat' is not numeric \(dtype category\)"),
                            ("maybe", r"value\(s\) NaN/Inf, the first at row 1, column 'maybe'")):
        with pytest.raises(securevfl.DataError) as exc:
            securevfl.dataset_from_dataframe(frame, "default", features=["age", column])
        assert re.search(message, _one_line(exc)), str(exc.value)
    frame.loc[3, "default"] = None
    with pytest.raises(securevfl.DataError, match=r"label column 'default' of frame has 1 missing"):
        securevfl.dataset_from_dataframe(frame, "default", features=["age"])


# --- configuration ------------------------------------------------------------------------------

def test_config_dicts_merge_onto_defaults_and_conflicts_are_refused() -> None:
    x, y = _blobs()
    assigned = securevfl.dataset_from_arrays(x, y, parties={"a": [0, 1, 2], "b": [3, 4, 5]})
    plain = securevfl.dataset_from_arrays(x, y)
    resolved = securevfl.resolve_config(assigned, {"train": {"epochs": 3}})
    assert resolved.train.epochs == 3 and resolved.train.batch_size == 64  # default kept
    assert resolved.parties == assigned.parties
    assert securevfl.resolve_config(plain, None).parties.passive == 2
    with pytest.raises(securevfl.ConfigError, match="'data' section but a data set was given"):
        securevfl.resolve_config(plain, {"data": {"name": "digits"}})
    with pytest.raises(securevfl.ConfigError, match=r"already assigns its columns to parties \['a', 'b'\]"):
        securevfl.resolve_config(assigned, {"parties": {"passive": 3}})
    with pytest.raises(securevfl.ConfigError, match="already assigns"):
        securevfl.resolve_config(assigned, securevfl.RunConfig(parties={"passive": 3}))
    with pytest.raises(securevfl.ConfigError, match="unknown key 'train.epoch'; did you mean 'epochs'"):
        securevfl.resolve_config(plain, {"train": {"epoch": 3}})
    with pytest.raises(securevfl.ConfigError, match="config must be a dict"):
        securevfl.resolve_config(plain, ["train.epochs=3"])  # type: ignore[arg-type]
    assert securevfl.bottom_model_shapes(assigned) == [(3, 2), (3, 2)]
    assert securevfl.bottom_model_shapes(plain, {"model": {"top": "trainable"}}) == [(3, 32), (3, 32)]


def test_an_assignment_trains_exactly_like_the_equivalent_explicit_column_lists() -> None:
    x, y = _blobs()
    data = securevfl.dataset_from_arrays(x, y, parties={"b": [1, 3, 5], "a": [0, 2], "active": [4]})
    via_api = securevfl.train(data, QUICK)
    explicit = securevfl.RunConfig.model_validate(
        {**QUICK, "parties": {"passive": 2, "split": "columns", "columns": [[1, 3, 5], [0, 2], [4]],
                              "active_block": True}})
    direct = run_training(explicit, dataset=data.dataset)
    assert [entry.loss for entry in via_api.history] == [e["loss"] for e in direct["history"]]
    assert via_api.main_accuracy == direct["main_accuracy"]
    assert via_api.dataset["block_columns"] == [3, 2, 1]


# --- the typed result ---------------------------------------------------------------------------

def test_the_typed_result_agrees_with_the_raw_record_and_result_json(tmp_path: Path) -> None:
    x, y = _blobs()
    data = securevfl.dataset_from_arrays(x, y, parties={"a": [0, 1, 2], "b": [3, 4, 5]})
    seen: list[int] = []
    result = securevfl.train(data, QUICK, out_dir=tmp_path / "run",
                             on_epoch_end=[lambda record: seen.append(record.epoch)])
    raw = result.to_dict()
    assert seen == [1, 2] and result.epochs_completed == 2
    assert result.main_accuracy == raw["main_accuracy"] == raw["history"][-1]["main_accuracy"]
    assert [(e.epoch, e.main_accuracy, e.loss) for e in result.history] == [
        (h["epoch"], h["main_accuracy"], h["loss"]) for h in raw["history"]]
    assert dict(result.attack_metrics) == {} and result.attack["kind"] == "none"
    assert result.total_bytes == sum(raw["bytes_sent"].values()) > 0
    assert dict(result.messages_sent) == raw["messages_sent"]
    assert dict(result.timing.by_category) == raw["timing"]["summary"]
    assert result.timing.epoch_seconds == tuple(raw["timing"]["epoch_seconds"])
    assert result.timing.by_phase["bottom_forward"] == raw["timing"]["bottom_forward"]
    assert (result.scheme, result.key_holder, result.seed) == ("plain", None, 0)
    assert result.dataset["n_train"] == data.dataset.n_train
    assert result.config.train.epochs == 2 and result.out_dir == tmp_path / "run"
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text(encoding="utf-8"))
    assert on_disk == raw
    reread = securevfl.TrainingResult.from_dict(on_disk)
    assert reread.history == result.history and reread.config == result.config
    raw["main_accuracy"] = -1.0  # to_dict is a copy; raw is read-only
    assert result.raw["main_accuracy"] == result.main_accuracy
    with pytest.raises(TypeError):
        result.raw["main_accuracy"] = 0.0  # type: ignore[index]


def test_attack_metrics_surface_from_the_last_epoch() -> None:
    x, y = _blobs(n=160)
    data = securevfl.dataset_from_arrays(x, y, parties={"a": [0, 1, 2], "b": [3, 4, 5]})
    result = securevfl.train(data, {**QUICK, "attack": {"kind": "label_inference"}})
    last = result.to_dict()["history"][-1]
    assert "label_inference_accuracy" in result.attack_metrics
    assert dict(result.attack_metrics) == {k: v for k, v in last.items()
                                           if k not in ("epoch", "main_accuracy", "loss")}


# --- a user's own bottom models -----------------------------------------------------------------

def _custom(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.1),
                         nn.Linear(8, n_out))


def test_any_module_trains_under_plain_and_receiver_and_both_agree() -> None:
    x, y = _blobs(n=64)
    data = securevfl.dataset_from_arrays(x, y, parties={"a": [0, 1, 2], "b": [3, 4, 5]})
    results = {}
    for scheme in ("plain", "ckks"):
        torch.manual_seed(0)
        config = {"train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "progress": False},
                  "protection": {"scheme": scheme, "key_holder": "receiver"}}
        models = [_custom(*shape) for shape in securevfl.bottom_model_shapes(data, config)]
        before = [p.detach().clone() for p in models[0].parameters()]
        results[scheme] = securevfl.train(data, config, bottom_models=models)
        after = list(models[0].parameters())
        assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
        assert torch.isfinite(models[0][1].running_mean).all()
    plain, ckks = results["plain"], results["ckks"]
    assert ckks.key_holder == "receiver" and ckks.bytes_sent["activation"] > 10 * plain.bytes_sent["activation"]
    # CKKS is approximate to about 1e-6 here; the receiver decrypts every message exactly once.
    assert ckks.history[0].loss == pytest.approx(plain.history[0].loss, abs=1e-4)


def test_label_private_schemes_refuse_other_layers_by_name() -> None:
    x, y = _blobs(n=64)
    data = securevfl.dataset_from_arrays(x, y, parties={"a": [0, 1, 2], "b": [3, 4, 5]})
    config = {**QUICK, "protection": {"scheme": "ckks", "key_holder": "active"}}
    with pytest.raises(securevfl.ConfigError) as exc:
        securevfl.train(data, config, bottom_models=[_custom(3, 2), _custom(3, 2)])
    assert "bottom_models[0]: key_holder = 'active'" in _one_line(exc)
    assert re.search(r"layer (BatchNorm1d|Tanh|Dropout)", str(exc.value))
