"""Runs that never execute code from a file, never lose a result, and never leave a torn one."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from securevfl.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from securevfl.cli import main
from securevfl.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["--config", str(ROOT / "examples" / "digits_plain.toml"), "--set", "train.epochs=1", "--set", "train.progress=false"]


class _Payload:
    """What an attacker would plant: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_planted_pickle_payload_never_runs_on_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "run").mkdir()
    torch.save({"format": 1, "config": {}, "payload": _Payload(marker)}, tmp_path / "run" / CHECKPOINT_NAME)
    assert main(["train", *DIGITS, "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "not a readable securevfl checkpoint" in _one_error_line(capsys)
    assert not marker.exists()


def test_no_reader_of_a_checkpoint_unpickles_code(tmp_path: Path) -> None:
    """The study's progress display reads checkpoints too: it must go through the same safe load."""
    from securevfl.study.runner import _epochs_done

    marker = tmp_path / "pwned"
    torch.save({"format": 1, "config": {}, "epoch": 3, "payload": _Payload(marker)}, tmp_path / CHECKPOINT_NAME)
    assert _epochs_done(tmp_path) == 0
    assert not marker.exists()
    save_checkpoint(tmp_path, {"config": {}, "epoch": 3})
    assert _epochs_done(tmp_path) == 3
    source = "\n".join(path.read_text() for path in (ROOT / "securevfl").rglob("*.py"))
    assert "weights_only=False" not in source


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: b"",
        lambda data: data[: len(data) // 2],
        lambda data: bytes(b ^ 0xFF if i % 97 == 0 else b for i, b in enumerate(data)),
        lambda data: os.urandom(len(data)),
    ],
    ids=["empty", "truncated", "flipped", "random"],
)
def test_a_corrupt_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], corrupt) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert main(["train", *DIGITS, "--out", str(run)]) == 0
    path = run / CHECKPOINT_NAME
    path.write_bytes(corrupt(path.read_bytes()))
    capsys.readouterr()
    assert main(["train", *DIGITS, "--out", str(run), "--resume"]) == 2
    _one_error_line(capsys)


def test_a_checkpoint_with_wrong_contents_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", *DIGITS, "--out", str(run)]) == 0
    state = torch.load(run / CHECKPOINT_NAME, weights_only=True)
    state["federation"]["passives"]["passive_1"]["model"] = {"0.weight": torch.zeros(2, 2)}  # wrong keys and shapes
    torch.save(state, run / CHECKPOINT_NAME)
    capsys.readouterr()
    assert main(["train", *DIGITS, "--out", str(run), "--resume"]) == 2
    assert "does not fit this run" in _one_error_line(capsys)


def test_checkpoints_round_trip_numpy_state_and_load_the_previous_pickled_arrays(tmp_path: Path) -> None:
    state = {"config": {"a": 1}, "arrays": {"x": np.arange(4), "mask": np.ones(3, dtype=bool)}, "rng": {"state": 2**100}}
    save_checkpoint(tmp_path, state)
    loaded = load_checkpoint(tmp_path, {"a": 1})
    assert isinstance(loaded["arrays"]["x"], np.ndarray) and loaded["arrays"]["x"].tolist() == [0, 1, 2, 3]
    assert loaded["arrays"]["mask"].dtype == bool and loaded["rng"]["state"] == 2**100
    # a v0.1 checkpoint pickled numpy arrays directly: plain numeric arrays still load
    buffer = io.BytesIO()
    torch.save({"format": 1, **state}, buffer)
    (tmp_path / CHECKPOINT_NAME).write_bytes(buffer.getvalue())
    assert load_checkpoint(tmp_path, {"a": 1})["arrays"]["x"].tolist() == [0, 1, 2, 3]


def test_a_finished_run_is_never_replaced_silently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", *DIGITS, "--out", str(run)]) == 0
    before = (run / "result.json").read_bytes()
    capsys.readouterr()
    assert main(["train", *DIGITS, "--out", str(run), "--set", "train.seed=1"]) == 2
    assert "already holds a run" in _one_error_line(capsys)
    assert (run / "result.json").read_bytes() == before
    assert main(["train", *DIGITS, "--out", str(run), "--set", "train.seed=1", "--overwrite"]) == 0
    assert json.loads((run / "result.json").read_text())["seed"] == 1


def test_an_output_path_that_cannot_hold_a_run_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["train", *DIGITS, "--out", str(a_file)]) == 2
    assert "is a file" in _one_error_line(capsys)


def test_a_kill_during_the_result_write_never_leaves_a_torn_file(tmp_path: Path) -> None:
    """20 writers of a large JSON killed with SIGKILL at random moments: the file is always old or new, whole."""
    target = tmp_path / "result.json"
    atomic_write_text(target, json.dumps({"version": "old", "rows": list(range(100))}))
    writer = textwrap.dedent(
        f"""
        import json, sys
        from securevfl.files import atomic_write_text
        payload = json.dumps({{"version": "new", "rows": list(range(400_000))}})
        while True:
            atomic_write_text(__import__("pathlib").Path({str(target)!r}), payload)
        """
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        process = subprocess.Popen([sys.executable, "-c", writer])
        try:
            process.wait(timeout=float(rng.uniform(0.3, 1.2)))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        content = json.loads(target.read_text())  # raises on a torn file
        assert content["version"] in ("old", "new")
        assert len(content["rows"]) == (100 if content["version"] == "old" else 400_000)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "result.json"]
    assert all(name.startswith(".result.json.") and name.endswith(".tmp") for name in leftovers)


def test_a_result_records_where_it_came_from(tmp_path: Path) -> None:
    assert main(["train", *DIGITS, "--out", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "result.json").read_text())["provenance"]
    assert record["versions"]["securevfl"] == json.loads((tmp_path / "run" / "result.json").read_text())["version"]
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["numpy"] == np.__version__ and record["versions"]["tenseal"]
    assert record["cpu_count"] == os.cpu_count() and isinstance(record["command"], list)
    commit = record["git_commit"]
    assert commit is None or (len(commit) == 40 and all(c in "0123456789abcdef" for c in commit))


def test_a_result_names_the_commit_its_process_loaded_not_the_checkouts_later_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long study in an editable checkout that moves on must not credit its runs to commits they never ran: the
    commit is read once, when the process imports securevfl's provenance, not at each result."""
    import securevfl.provenance as provenance

    loaded = provenance.provenance()["git_commit"]
    monkeypatch.setattr(provenance, "_git_commit", lambda: "f" * 40)  # the checkout's HEAD moved on
    assert provenance.provenance()["git_commit"] == loaded == provenance._COMMIT_AT_IMPORT


def test_an_interruption_prints_the_exact_command_that_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import securevfl.training as training

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "run_training", interrupted)
    argv = ["train", *DIGITS, "--out", str(tmp_path / "run")]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "securevfl train --config" in err and err.strip().endswith("--resume")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.bottom_hidden=[1e9]"], "widths must be at most 65536"),
        (["--set", "model.bottom_output=1000000000"], "bottom_output must be between 1 and 65536"),
        (["--set", "data.name=synthetic", "--set", "data.synthetic.n_samples=1000000000"], "n_samples"),
    ],
)
def test_absurd_sizes_are_refused_before_allocation(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *DIGITS, *args, "--out", str(tmp_path / "run")]) == 2
    assert message in _one_error_line(capsys)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[train]\nepochs = 1 # \xff\xfe\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "not UTF-8 text" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("width", "reason"),
    [(100.0, "hides nothing: it must be at least 16 x the larger value bound (64)"), (1e6, "loses precision")],
)
def test_mask_half_width_is_validated_with_its_reason(width: float, reason: str) -> None:
    from securevfl.config import validate_config
    from securevfl.errors import ConfigError

    with pytest.raises(ConfigError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        validate_config({"protection": {"scheme": "ckks", "key_holder": "coordinator", "mask_half_width": width}})
    validate_config({"protection": {"scheme": "ckks", "key_holder": "receiver", "mask_half_width": width}})  # unused there


def test_the_mask_must_hide_a_refreshed_hidden_layer_gradient_too() -> None:
    """Its public bound is 8 x gradient_bound: 64 x 8 = 512, so a mask of 1,024 (16 x 64) is too narrow."""
    from securevfl.config import validate_config
    from securevfl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"refreshed under the bound 8 x gradient_bound = 512, and the mask must be at least 16 x that"):
        validate_config({"protection": {"scheme": "ckks", "key_holder": "coordinator", "gradient_bound": 64, "mask_half_width": 1024},
                         "model": {"bottom_hidden": [8]}})
    # without hidden layers nothing is refreshed: 16 x 64 is enough
    validate_config({"protection": {"scheme": "ckks", "key_holder": "coordinator", "gradient_bound": 64, "mask_half_width": 1024},
                     "model": {"bottom_hidden": []}})
