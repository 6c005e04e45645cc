"""Config loading: overrides, validation messages, impossible combinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from securevfl.config import load_config
from securevfl.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREVFL_DATA_DIR", "/data/root")  # no example names a path of anybody's machine
    config = load_config(path)
    assert config.train.epochs >= 1
    if config.data.name == "mnist":
        assert config.data.dir == Path("/data/root/mnist")


def test_a_file_backed_data_set_needs_a_dir_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECUREVFL_DATA_DIR", raising=False)
    with pytest.raises(ConfigError, match=r"set data.dir \(--set data.dir=PATH\) or SECUREVFL_DATA_DIR to a folder holding mnist/"):
        load_config(EXAMPLES / "mnist_plain_sum.toml")
    monkeypatch.setenv("SECUREVFL_DATA_DIR", "/data/root")
    assert load_config(EXAMPLES / "mnist_plain_sum.toml", ["data.dir=/elsewhere"]).data.dir == Path("/elsewhere")


def test_overrides_parse_toml_literals_and_fall_back_to_strings() -> None:
    config = load_config(
        EXAMPLES / "digits_plain.toml",
        ["train.epochs=3", "train.lr=0.5", "model.bottom_hidden=[8, 4]", "train.progress=false", "data.dir=some/dir"],
    )
    assert config.train.epochs == 3 and config.train.lr == 0.5
    assert config.model.bottom_hidden == [8, 4]
    assert config.train.progress is False
    assert str(config.data.dir) == "some/dir"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epoch=2"], "unknown key 'train.epoch'; did you mean 'epochs'?"),
        (["colour=blue"], "unknown key 'colour'"),
        (["train.epochs=two"], "train.epochs"),
        (["train.epochs=0"], "greater than or equal to 1"),
        (["model.top=deep"], "model.top"),
        (["model.top_hidden=[16]"], "top_hidden applies only to top = 'trainable'"),
        (["attack.gama=10"], "unknown key 'attack.gama'; did you mean 'gamma'?"),
        (["train"], "--set expects KEY=VALUE"),
        (["train.epochs.x=1"], "is a value, not a section"),
    ],
)
def test_bad_configs_give_one_clear_error(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLES / "digits_plain.toml", overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_or_invalid_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 2\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
