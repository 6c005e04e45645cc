"""End-to-end runs on digits: CLI, result file, determinism, resume, and user errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from securevfl.cli import main
from securevfl.config import load_config
from securevfl.errors import SecureVFLError
from securevfl.training import run_training

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_plain.toml"
QUICK = ["train.epochs=3", "train.progress=false"]


def test_cli_trains_digits_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(DIGITS), "--out", str(tmp_path), *sum((["--set", s] for s in QUICK), [])]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert 0.5 < result["main_accuracy"] <= 1.0  # 3 epochs on digits: far above chance (10 %)
    assert [entry["epoch"] for entry in result["history"]] == [1, 2, 3]
    assert set(result["history"][0]) == {"epoch", "main_accuracy", "loss"}
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert set(result["bytes_sent"]) == {"activation", "gradient", "eval_activation"}
    # 2 passives x 1437 samples x 10 float32 per epoch, plus framing
    assert result["bytes_sent"]["activation"] > 3 * 2 * 1437 * 10 * 4
    for phase in ("bottom_forward", "top", "bottom_backward", "serialize", "deserialize", "evaluate"):
        assert result["timing"][phase] >= 0
    assert result["config"]["train"]["epochs"] == 3 and result["seed"] == 0
    assert result["version"] and result["scheme"] == "plain"
    out = capsys.readouterr().out
    assert "main accuracy" in out and "result:" in out


def test_same_seed_same_result_and_different_seed_differs() -> None:
    config = load_config(DIGITS, QUICK)
    first, second = run_training(config), run_training(config)
    assert first["history"] == second["history"]
    assert first["main_accuracy"] == second["main_accuracy"]
    other = run_training(load_config(DIGITS, [*QUICK, "train.seed=1"]))
    assert other["history"] != first["history"]


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path: Path) -> None:
    config = load_config(DIGITS, ["train.epochs=4", "train.progress=false"])
    uninterrupted = run_training(config, out_dir=tmp_path / "full")

    def interrupt_after_two(record) -> None:  # type: ignore[no-untyped-def]
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(config, out_dir=tmp_path / "cut", on_epoch_end=[interrupt_after_two])
    assert not (tmp_path / "cut" / "result.json").exists()
    resumed = run_training(config, out_dir=tmp_path / "cut", resume=True)
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["bytes_sent"] == uninterrupted["bytes_sent"]
    assert resumed["messages_sent"] == uninterrupted["messages_sent"]


def test_resume_can_extend_epochs_but_not_change_the_experiment(tmp_path: Path) -> None:
    run_training(load_config(DIGITS, ["train.epochs=2", "train.progress=false"]), out_dir=tmp_path)
    extended = run_training(load_config(DIGITS, ["train.epochs=3", "train.progress=false"]), out_dir=tmp_path, resume=True)
    straight = run_training(load_config(DIGITS, ["train.epochs=3", "train.progress=false"]))
    assert extended["history"] == straight["history"]
    assert main(["train", "--config", str(DIGITS), "--out", str(tmp_path), "--resume", "--set", "train.lr=0.5"]) == 2


def _run_cli_expecting_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mnist = str(ROOT / "examples" / "mnist_plain_sum.toml")
    err = _run_cli_expecting_error(capsys, "--config", mnist, "--set", f"data.dir={tmp_path / 'nowhere'}")
    assert "nowhere" in err

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (corrupt / name).write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 12))
    err = _run_cli_expecting_error(capsys, "--config", mnist, "--set", f"data.dir={corrupt}")
    assert "idx" in err.lower() or "mnist" in err.lower()

    err = _run_cli_expecting_error(capsys, "--config", str(DIGITS), "--set", "train.epoch=2")
    assert "unknown key 'train.epoch'" in err

    err = _run_cli_expecting_error(capsys, "--config", str(DIGITS), "--set", "parties.passive=65", "--set", "parties.split=even")
    assert "64" in err and "65" in err


@pytest.mark.shared_data
def test_real_mnist_short_training(tmp_path: Path) -> None:
    data = ROOT.parent / "shared" / "data" / "mnist"
    if not (data / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found at {data} (the shared data folder is absent)")
    config = load_config(
        ROOT / "examples" / "mnist_plain_sum.toml",
        [f"data.dir={data}", "data.train_limit=3000", "data.test_limit=500", "train.epochs=2", "train.lr=0.05", "train.progress=false"],
    )
    result = run_training(config)
    assert result["dataset"]["block_columns"] == [392, 392]
    assert result["main_accuracy"] > 0.6


def _interrupted_after(epoch: int):  # type: ignore[no-untyped-def]
    def stop(record) -> None:  # type: ignore[no-untyped-def]
        if record.epoch == epoch:
            raise KeyboardInterrupt

    return stop


def test_a_checkpoint_of_the_previous_layout_still_resumes(tmp_path: Path) -> None:
    """v0.1 kept every attack kind's fields in the stored [attack] and a passive attack's state with its party."""
    import torch

    config = load_config(DIGITS, ["train.epochs=2", "train.progress=false", "attack.kind=label_inference"])
    uninterrupted = run_training(config)
    with pytest.raises(KeyboardInterrupt):
        run_training(config, out_dir=tmp_path, on_epoch_end=[_interrupted_after(1)])
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    state["config"]["attack"].update(gamma=10.0, record="latest", poison_train=600, blur_activations=False)
    state["federation"]["passives"]["passive_2"]["attack"] = state["federation"].pop("attack")
    torch.save(state, path)
    resumed = run_training(config, out_dir=tmp_path, resume=True)
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["label_inference_accuracy"] == uninterrupted["label_inference_accuracy"]


def test_resuming_a_ciphertext_replacement_that_recorded_a_row_is_refused_in_one_line(tmp_path: Path) -> None:
    overrides = [
        "train.epochs=2", "train.progress=false", "data.train_limit=96", "data.test_limit=32", "train.batch_size=32",
        "protection.scheme=ckks", "protection.key_holder=active", "protection.preset=compute", "attack.kind=gradient_replacement",
        "attack.poison_train=8", "attack.poison_test=8", "attack.known_target_samples=4",
    ]
    config = load_config(ROOT / "examples" / "digits_ckks.toml", overrides)
    with pytest.raises(KeyboardInterrupt):
        run_training(config, out_dir=tmp_path, on_epoch_end=[_interrupted_after(1)])
    with pytest.raises(SecureVFLError, match="cannot resume a gradient-replacement run on ciphertext rows"):
        run_training(config, out_dir=tmp_path, resume=True)


def test_a_run_sizes_numpys_blas_pool_like_torchs() -> None:
    """train.threads sizes torch's pool and numpy's BLAS (securevfl/threads.py): a spinning BLAS pool on busy cores made
    the label-private runs' small LAPACK calls hundreds of times slower."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2):  # as numpy starts on a 2-core machine; restored afterwards
        run_training(load_config(DIGITS, [*QUICK, "train.threads=1"]))
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and set(blas) == {1}
        assert torch.get_num_threads() == 1
