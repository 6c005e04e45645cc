"""benchmarks/bench_transport.py and examples/multiprocess_runs.py on a tiny plaintext run (96 samples, 1 epoch,
one round): every table number recomputed from the result files the runs left on disk."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path
from types import ModuleType

import pytest

from securevfl.launcher import TRANSPORT_KINDS

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.train_limit=96", "data.test_limit=32", "train.batch_size=48", "transport.receive_timeout=30", "transport.connect_timeout=20"]
BUSY = ("compute", "encrypted_compute", "keygen", "encode_encrypt", "serialize", "deserialize", "decrypt")


def _load(relative: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("benchmarks/bench_transport.py", "bench_transport_under_test")
runs = _load("examples/multiprocess_runs.py", "multiprocess_runs_under_test")


def test_bad_scheme_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--schemes", "plain,ckks/nobody"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown scheme ckks/nobody" in error


def test_tiny_plaintext_bench_matches_its_result_files(tmp_path: Path) -> None:
    work, json_path, md_path = tmp_path / "work", tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["--schemes", "plain", "--rounds", "1", "--epochs", "1", "--work", str(work), "--json", str(json_path), "--markdown", str(md_path)]
    for override in TINY:
        argv += ["--set", override]
    assert bench.main(argv) == 0
    report = json.loads(json_path.read_text())
    row = report["schemes"]["plain"]
    inproc = json.loads((work / "plain" / "inprocess" / "result.json").read_text())
    grpc = json.loads((work / "plain" / "grpc" / "result.json").read_text())
    assert grpc["transport"] == "grpc" and inproc["dataset"]["n_train"] == 96

    # epoch seconds: one epoch, so the "steady" epoch is epoch 1 of the active party, from the files
    assert row["inprocess_epoch_median"] == inproc["timing"]["epoch_seconds"][0]
    assert row["grpc_epoch_median"] == grpc["timing"]["epoch_seconds"][0] == grpc["parties"]["active"]["timing"]["epoch_seconds"][0]
    assert row["ratio"] == round(grpc["timing"]["epoch_seconds"][0] / inproc["timing"]["epoch_seconds"][0], 3)
    ratios = [multi / inproc for inproc, multi in zip(row["inprocess_steady_epoch_seconds"], row["grpc_steady_epoch_seconds"], strict=True)]
    assert row["ratio"] == round(statistics.median(ratios), 3)

    # critical path: the party with the most busy seconds, busy = the sum of its timing summary's categories
    busy = {name: sum(party["timing"]["summary"].get(key, 0.0) for key in BUSY) for name, party in grpc["parties"].items()}
    assert set(row["party_busy_per_epoch"]) == set(busy) == {"passive_1", "passive_2", "active"}
    for name, seconds in busy.items():
        assert row["party_busy_per_epoch"][name] == pytest.approx(seconds, abs=2e-4)
    # the busiest party (two passives can tie within the table's rounding: either is then the critical one)
    assert busy[row["critical_party"]] == pytest.approx(max(busy.values()), abs=2e-4)

    # bytes: accounted = the result's bytes_sent summed (done frames included), the wire layers from its wire_bytes
    b = row["bytes"]
    assert b["inprocess_accounted"] == sum(inproc["bytes_sent"].values())
    # each party counts its wire bytes as its end of the run begins: every frame but the closing DONE ones
    assert b["accounted"] == grpc["wire_bytes"]["accounted_sent"] == sum(grpc["bytes_sent"].values()) - grpc["bytes_sent"]["done"]
    assert b["accounted"] - b["inprocess_accounted"] == grpc["bytes_sent"]["hello"] + grpc["bytes_sent"]["ready"]  # the attempt handshake
    assert b["grpc"] == grpc["wire_bytes"]["grpc_sent"] >= b["accounted"]
    if grpc["wire_bytes"]["tcp_sent"] is not None:
        assert b["tcp"] == max(grpc["wire_bytes"]["tcp_sent"], grpc["wire_bytes"]["tcp_received"])
        assert b["tcp_overhead_percent"] == round(100 * (b["tcp"] / b["accounted"] - 1), 2)
    assert report["machine"]["cpus"] and len(report["machine"]["load_average_before"]) == 3

    # the Markdown table carries the same numbers
    text = md_path.read_text()
    assert f"| plain | {row['inprocess_epoch_median']:.3f} | {row['grpc_epoch_median']:.3f} | {row['ratio']:.2f}x |" in text
    assert f"| {b['inprocess_accounted']:,} | {b['accounted']:,} | {b['grpc']:,} |" in text

    # the multi-process runs script's comparison of the same two runs: plaintext gives the in-process history exactly
    config = runs.build_config("digits/plain", "inprocess", ["data.train_limit=96", "data.test_limit=32"])
    pair = {"inprocess": {"result": inproc, "wall_seconds": 1.0}, "grpc": {"result": grpc, "wall_seconds": 2.0}}
    compared = runs.compare("digits/plain", config, pair)
    assert compared["status"] == "ok", compared.get("problems")
    assert compared["history_identical"] and compared["history_max_abs_loss"] == 0.0 == compared["history_max_abs_accuracy"]
    assert compared["messages_equal"] and compared["done_frames"] == sum(grpc["messages_sent"][kind] for kind in TRANSPORT_KINDS) > 0
    assert compared["bytes_grpc_accounted_without_done"] == compared["bytes_inprocess"] == b["inprocess_accounted"]
    assert compared["inprocess_accuracy"] == compared["grpc_accuracy"] == inproc["main_accuracy"]
