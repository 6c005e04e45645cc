"""The overhead benchmark: a quick run end to end, and the arithmetic that turns timings into ratios.

No test asserts a timing threshold (the machine may be busy); they assert that every reported
number follows from the measured ones as documented, and that extrapolated rows say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from securevfl.bench.measure import BenchChildError, measure_scheme, run_isolated
from securevfl.bench.report import PAILLIER_KEY, add_ratios, derive_scheme, evaluate_targets, render_markdown, write_outputs
from securevfl.bench.schemes import SchemeSpec, run_config, scheme_matrix, select_schemes
from securevfl.bench.workload import MNIST_EPOCH, EpochShape, mnist_shaped_dataset
from securevfl.cli import main
from securevfl.errors import ConfigError

QUICK_KEYS = ["plain", "ckks/receiver/transport", "ckks/active/compute", "ckks/coordinator/compute"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--out", str(out), "--paillier-values", "2"]) == 0
    report = json.loads((out / "bench.json").read_text())
    return out, report, (out / "bench.md").read_text()


def test_quick_bench_writes_json_table_and_plot(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    out, report, table = quick_run
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(report["schemes"]) == [*QUICK_KEYS, PAILLIER_KEY]
    assert report["quick"] is True and report["command"].startswith("securevfl bench --quick")
    assert report["workload"]["message_shape"] == [64, 10]  # sum top: 10 logits per sample per passive
    assert report["workload"]["epoch"] == {**MNIST_EPOCH.to_dict(), "steps": 938}
    for key, row in report["schemes"].items():
        assert row["extrapolated"] is True and row["basis"].startswith("extrapolated"), key  # --quick: nothing is a full epoch
        assert f"| {key} * |" in table  # starred: extrapolated
        assert set(row["phases_per_epoch"]) >= {"compute", "encrypted_compute", "encode_encrypt", "serialize", "deserialize", "decrypt", "transfer"}


def test_quick_bench_ratios_follow_from_the_measurements(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, report, _ = quick_run
    rows, raw, epoch = report["schemes"], report["raw"], report["workload"]["epoch"]
    plain = rows["plain"]
    for key in QUICK_KEYS:
        row, measured = rows[key], raw[key]
        train, evaluation = measured["train"], measured["eval"]
        assert row["timed_steps"] == train["steps"] == SchemeSpec(**_spec_args(measured["spec"])).steps
        expected_epoch = train["seconds"] * epoch["steps"] / train["steps"] + evaluation["seconds"] * epoch["n_test"] / evaluation["samples"]
        assert row["epoch_seconds"] == pytest.approx(expected_epoch, abs=1e-3)
        assert row["step_seconds"] == pytest.approx(train["seconds"] / train["steps"], abs=1e-6)
        assert row["bytes_per_step"] == {kind: pytest.approx(n / train["steps"], abs=0.1) for kind, n in train["bytes"].items()}
        assert row["ratio_to_plain"]["epoch"] == round(row["epoch_seconds"] / plain["epoch_seconds"], 2)
        assert row["ratio_to_plain"]["step"] == round(row["step_seconds"] / plain["step_seconds"], 2)
        assert row["peak_rss_mb"] >= row["memory"]["after_setup_mb"] > 0
    assert plain["ratio_to_plain"] == {"step": 1.0, "epoch": 1.0, "bytes_per_step": 1.0}
    # plaintext ships 2 activations and 2 gradients of 64x10 float32 per step (plus frame headers)
    assert plain["messages_per_step"] == {"activation": 2.0, "gradient": 2.0}
    assert plain["bytes_per_step"]["activation"] > 2 * 64 * 10 * 4
    # label-private schemes talk to the key holder: masked decryptions and refreshes
    assert {"decrypt_request", "decrypt_reply", "refresh_request"} <= set(rows["ckks/active/compute"]["bytes_per_step"])


def test_quick_bench_paillier_baseline_and_targets(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, report, table = quick_run
    comparison = report["paillier"]
    assert comparison["key_bits"] == 2048 and set(comparison["messages"]) == {"64x10", "64x32"}
    for name, entry in comparison["messages"].items():
        pail, ckks = entry["paillier"], entry["ckks"]
        assert pail["values"] == ckks["values"] == 64 * int(name.split("x")[1])
        assert pail["timed_values"] == 2 and pail["basis"] == f"extrapolated from 2 of {pail['values']} values"
        assert pail["bytes"] == pail["values"] * (512 + 4)  # one 4096-bit ciphertext + exponent per value
        assert pail["max_abs_error"] < 1e-9 and ckks["max_abs_error"] < 1e-5
        assert entry["ratio"]["encrypt"] == pytest.approx(pail["message_ms"]["encrypt"] / ckks["message_ms"]["encrypt"], rel=1e-3)
        assert entry["ratio"]["bytes"] == pytest.approx(pail["bytes"] / ckks["bytes"], abs=0.05)
    row, plain = report["schemes"][PAILLIER_KEY], report["schemes"]["plain"]
    per_value = comparison["messages"]["64x10"]["paillier"]["per_value_ms"]
    crypto_ms = sum(per_value[op] for op in ("encrypt", "serialize", "deserialize", "decrypt")) * 640 * 4
    assert row["step_seconds"] == pytest.approx(plain["step_seconds"] + crypto_ms / 1e3, rel=1e-4)
    assert row["bytes_per_step_total"] == 4 * 640 * 516
    assert "extrapolated" in row["basis"] and row["peak_rss_mb"] is None

    targets = report["targets"]
    receiver = targets["receiver_transport_epoch_ratio"]
    assert receiver["value"] == report["schemes"]["ckks/receiver/transport"]["ratio_to_plain"]["epoch"]
    assert receiver["met"] == (receiver["value"] <= 3.0)
    speed = targets["ckks_vs_paillier_encrypt"]
    assert speed["message"] == "64x10" and speed["value"] == comparison["messages"]["64x10"]["ratio"]["encrypt"]
    assert speed["met"] == (speed["value"] >= 5000) and speed["paillier_gmpy2"] == comparison["gmpy2"]
    assert "receiver_transport_epoch_ratio" in table and "ckks_vs_paillier_encrypt" in table


def _spec_args(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "key"}


def _measurement(steps: int, train_seconds: float, samples: int, eval_seconds: float, key_holder: str | None = None) -> dict[str, Any]:
    """A raw measurement as :func:`measure_scheme` returns it, with chosen numbers."""
    spec = SchemeSpec("ckks" if key_holder else "plain", key_holder, "transport" if key_holder else None, steps=steps)
    return {
        "spec": spec.to_dict(),
        "message_shape": [64, 10],
        "warmup_steps": 1,
        "setup": {"seconds": 0.5, "phases": {"keygen": 0.25}, "bytes": {"public_key": 1000}},
        "train": {
            "steps": steps,
            "seconds": train_seconds,
            "step_seconds": {},
            "phases": {"bottom_forward": 0.1 * steps, "encrypt": 0.2 * steps, "ciphertext_serialize": 0.05 * steps},
            "bytes": {"activation": 300 * steps, "gradient": 100 * steps},
            "messages": {"activation": 2 * steps, "gradient": 2 * steps},
        },
        "eval": {"samples": samples, "seconds": eval_seconds, "phases": {"evaluate": eval_seconds}, "bytes": {"eval_activation": 50}, "messages": {}},
        "memory": {"peak_mb": 123.0},
    }


def test_derive_scheme_extrapolates_by_the_epoch_geometry() -> None:
    shape = EpochShape(n_train=640, n_test=2000, batch_size=64)  # 10 steps per epoch
    row = derive_scheme(_measurement(steps=4, train_seconds=2.0, samples=1000, eval_seconds=0.5, key_holder="receiver"), shape)
    assert row["epoch_seconds"] == pytest.approx(2.0 * 10 / 4 + 0.5 * 2)
    assert row["extrapolated"] and row["basis"] == "extrapolated from 4 steps (after 1 warm-up) and 1000 test samples"
    assert row["step_seconds"] == 0.5 and row["bytes_per_step"] == {"activation": 300, "gradient": 100}
    assert row["bytes_per_epoch"] == 400 * 10 + 50 * 2
    assert row["phases_per_step"]["encode_encrypt"] == pytest.approx(0.2)
    assert row["phases_per_epoch"]["serialize"] == pytest.approx(0.05 * 10)
    assert row["phases_per_epoch"]["compute"] == pytest.approx(0.1 * 10 + 0.5 * 2)
    assert row["setup"]["keygen_seconds"] == 0.25

    full = derive_scheme(_measurement(steps=10, train_seconds=3.0, samples=2000, eval_seconds=1.0), shape)
    assert not full["extrapolated"] and full["basis"] == "measured: full epoch" and full["epoch_seconds"] == 4.0

    rows = {"plain": full, "ckks/receiver/transport": row}
    add_ratios(rows)
    assert row["ratio_to_plain"] == {"step": round(0.5 / 0.3, 2), "epoch": round(6.0 / 4.0, 2), "bytes_per_step": 1.0}
    targets = evaluate_targets(rows, None, None)
    assert targets["receiver_transport_epoch_ratio"] == {"value": 1.5, "target": "<= 3", "met": True, "basis": row["basis"]}
    assert targets["ckks_vs_paillier_encrypt"]["met"] is None  # not measured, not claimed


def test_scheme_matrix_covers_every_key_holder_and_the_presets_it_accepts() -> None:
    full = {spec.key: spec for spec in scheme_matrix(quick=False)}
    assert set(full) == {
        "plain", "ckks/receiver/transport", "ckks/receiver/compute", "ckks/receiver/deep",
        "ckks/active/compute", "ckks/active/deep", "ckks/coordinator/compute", "ckks/coordinator/deep",
    }
    assert full["plain"].mode == full["ckks/receiver/transport"].mode == "epoch"
    assert all(spec.mode == "steps" for spec in full.values() if spec.label_private)
    for top in ("sum", "trainable"):
        for spec in full.values():
            config = run_config(spec, top, MNIST_EPOCH)
            assert config.protection.scheme == spec.scheme and config.train.batch_size == 64
    with pytest.raises(ConfigError, match="transport"):  # no multiplicative level: refused for blind schemes
        run_config(SchemeSpec("ckks", "active", "transport"), "sum", MNIST_EPOCH)
    assert [spec.key for spec in scheme_matrix(quick=True)] == QUICK_KEYS
    assert [s.key for s in select_schemes(scheme_matrix(True), ["plain", "paillier"])] == ["plain"]
    with pytest.raises(ConfigError, match="unknown scheme"):
        select_schemes(scheme_matrix(True), ["ckks/receiver/nope"])


def test_mnist_shaped_data_has_mnist_geometry() -> None:
    data = mnist_shaped_dataset(100, 20)
    assert data.x_train.shape == (100, 784) and data.image_shape == (28, 28) and data.num_classes == 10
    assert 0.1 < (data.x_train > 0).mean() < 0.3 and data.x_train.max() <= 1.0


def test_render_markdown_labels_extrapolated_rows() -> None:
    shape = EpochShape(n_train=640, n_test=2000)
    rows = {
        "plain": derive_scheme(_measurement(10, 3.0, 2000, 1.0), shape),
        "ckks/receiver/transport": derive_scheme(_measurement(4, 2.0, 1000, 0.5, "receiver"), shape),
    }
    add_ratios(rows)
    report = {
        "version": "0", "created": "now", "quick": False, "command": "securevfl bench",
        "machine": {"cpu_count": 2, "load_average_start": None, "load_average_end": None},
        "workload": {"data": "x", "parties": 2, "features_per_party": 392, "top": "sum", "message_shape": [64, 10], "epoch": shape.to_dict()},
        "memory_method": "ru_maxrss", "schemes": rows, "paillier": None, "targets": evaluate_targets(rows, None, None),
    }
    text = render_markdown(report)
    assert "| plain | " in text and "| ckks/receiver/transport * |" in text
    assert "measured: full epoch" in text and "extrapolated from 4 steps" in text
    assert "1.5x" in text and "**met**" in text and "not measured" in text


def test_report_without_schemes_has_no_empty_tables_and_no_plot(tmp_path: Path) -> None:
    report = {
        "version": "0", "created": "now", "quick": True, "command": "securevfl bench --only paillier",
        "machine": {"cpu_count": 2, "load_average_start": None, "load_average_end": None},
        "workload": {"data": "x", "parties": 2, "features_per_party": 392, "top": "sum", "message_shape": [64, 10], "epoch": MNIST_EPOCH.to_dict()},
        "memory_method": "ru_maxrss", "schemes": {}, "paillier": None, "targets": evaluate_targets({}, None, None),
    }
    notes: list[str] = []
    paths = write_outputs(report, tmp_path, log=notes.append)
    assert paths["plot"] is None and notes == ["no plot: no scheme was measured"]
    text = paths["table"].read_text()  # type: ignore[union-attr]
    assert "No protection scheme was measured" in text and "## Overhead" not in text
    assert json.loads(paths["json"].read_text())["schemes"] == {}  # type: ignore[union-attr]


def test_cli_bench_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "ckks/receiver/nope", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert main(["bench", "--paillier-values", "0", "--out", str(tmp_path)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert not (tmp_path / "bench.json").exists()


def test_isolated_measurement_reports_a_user_error_from_the_child(tmp_path: Path) -> None:
    spec = SchemeSpec("plain", steps=1, warmup=0, eval_samples=8)
    with pytest.raises(BenchChildError, match="MNIST files missing"):
        run_isolated(measure_scheme, spec, "sum", MNIST_EPOCH, (64, 8), tmp_path)  # an empty --data-dir
