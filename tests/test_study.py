"""``securevfl study``: expansion of a study file, a tiny grid end to end, resume, the tables, verdicts."""

from __future__ import annotations

import csv
import json
import re
import shutil
import os
from pathlib import Path
from typing import Any

import pytest

from helpers import TINY_STUDY

from securevfl.attacks import parse_attack_config
from securevfl.cli import main
from securevfl.config import validate_config
from securevfl.errors import ConfigError
from securevfl.study import load_study, plan_runs, run_and_report, run_study
from securevfl.study.runner import CHECKPOINT_NAME, FAILED_NAME, RESULT_NAME, reset_failed, run_dir
from securevfl.study.spec import flatten, scheme_overrides, set_path
from securevfl.study.table import base_columns, collect_rows
from securevfl.training import run_training

TINY = TINY_STUDY


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny grid (digits, 2 cells x 2 seeds) run once through the CLI with 2 workers."""
    root = tmp_path_factory.mktemp("study")
    study = _write(root, TINY)
    out = root / "out"
    assert main(["study", "--config", str(study), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    return study, out


def test_tiny_grid_writes_one_row_per_run_with_the_expected_columns(tiny_study: tuple[Path, Path]) -> None:
    _, out = tiny_study
    with (out / "study_runs.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4  # 2 cells x 2 seeds
    assert {(row["axis:attack.gamma"], row["seed"]) for row in rows} == {("1", "0"), ("1", "1"), ("3", "0"), ("3", "1")}
    assert set(base_columns()) | {"axis:scheme", "axis:attack.gamma", "bytes_activation", "bytes_gradient"} <= set(rows[0])
    for row in rows:
        # 2 epochs on 300 digits: a seed may end within 5 points of chance, which the table calls collapsed
        assert row["status"] in ("ok", "collapsed") and row["scheme_label"] == "plain" and row["attack"] == "gradient_replacement"
        result = json.loads((out / "runs" / row["run_id"] / RESULT_NAME).read_text())
        # every number in the row is the run's own last-epoch value
        assert float(row["main_accuracy"]) == result["main_accuracy"] == result["history"][-1]["main_accuracy"]
        assert float(row["backdoor_accuracy"]) == result["backdoor_accuracy"]
        assert float(row["gamma"]) == float(row["axis:attack.gamma"]) == result["config"]["attack"]["gamma"]
        assert int(row["seed"]) == result["config"]["train"]["seed"]
        assert int(row["bytes_total"]) == sum(result["bytes_sent"].values()) > 0
    payload = json.loads((out / "study_runs.json").read_text())
    assert len(payload["rows"]) == 4 and set(payload["histories"]) == {row["run_id"] for row in rows}
    assert all(len(history) == 2 for history in payload["histories"].values())
    report = (out / "report.md").read_text()
    assert "## Survival" in report and "survives" not in report.split("## Survival")[0]
    assert "| plain main | plain backdoor | plain peak backdoor | plain stopped |" in report  # a backdoor grid keeps its columns
    assert "runs that diverged, out_of_range" in report and not re.search(r"\{[a-z_]+\(\)\}", report)  # no unfilled placeholder
    for png in ("gamma_epochs.png", "gamma_vs_attack_gamma.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{png}" in report


def test_seeds_differ_and_match_a_direct_training_run(tiny_study: tuple[Path, Path]) -> None:
    study, out = tiny_study
    runs = plan_runs(load_study(study))
    first = json.loads((run_dir(out, runs[0]) / RESULT_NAME).read_text())
    second = json.loads((run_dir(out, runs[1]) / RESULT_NAME).read_text())
    assert runs[0].seed != runs[1].seed and first["history"] != second["history"]
    direct = run_training(validate_config(runs[0].raw))  # the same config trained in this process
    assert direct["history"] == first["history"]


def test_rerun_does_not_train_finished_cells(tiny_study: tuple[Path, Path]) -> None:
    study, out = tiny_study
    results = sorted((out / "runs").glob(f"**/{RESULT_NAME}"))
    stamps = {path: os.stat(path).st_mtime_ns for path in results}
    outcomes = run_study(plan_runs(load_study(study)), out, workers=2, show_progress=False, log=lambda _: None)
    assert [outcome.status for outcome in outcomes] == ["skipped"] * 4
    assert {path: os.stat(path).st_mtime_ns for path in results} == stamps


def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(
    tiny_study: tuple[Path, Path], tmp_path: Path
) -> None:
    study, finished_out = tiny_study
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    target = runs[2]

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(record: Any) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):  # killed after epoch 1: a checkpoint and no result
        run_training(validate_config(target.raw), run_dir(out, target), on_epoch_end=[stop_after_first_epoch])
    assert (run_dir(out, target) / "checkpoint.pt").is_file() and not (run_dir(out, target) / RESULT_NAME).exists()
    logged: list[str] = []
    outcomes = run_study([target], out, workers=1, show_progress=False, log=logged.append)
    table_status = collect_rows([target], finished_out)[0][0]["status"]  # tiny runs may be collapsed
    assert [outcome.status for outcome in outcomes] == [table_status] and table_status in ("ok", "collapsed")
    resumed = json.loads((run_dir(out, target) / RESULT_NAME).read_text())
    uninterrupted = json.loads((run_dir(finished_out, target) / RESULT_NAME).read_text())
    assert resumed["history"] == uninterrupted["history"]
    assert len(resumed["timing"]["epoch_seconds"]) == 2


def test_a_changed_config_is_not_mistaken_for_a_finished_run(tiny_study: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = tiny_study
    changed = _write(tmp_path, TINY.replace('"train.lr" = 0.05', '"train.lr" = 0.02'))
    with pytest.raises(ConfigError, match="different config"):
        run_study(plan_runs(load_study(changed)), out, show_progress=False, log=lambda _: None)


def _write_fate_sample(directory: Path, rows: int = 60) -> None:
    """A tiny FATE NUS-WIDE sample on disk: a data set the config names but the run reads from files."""
    directory.mkdir(parents=True)
    guest = ["id,0,1,2,y"] + [f"{i},{i % 7},{(i * 3) % 5},{i % 2},{i % 2}" for i in range(rows)]
    host = ["id,0,1,2"] + [f"{i},{i % 2},{(i // 2) % 2},{(i // 3) % 2}" for i in range(rows)]
    (directory / "nus_wide_train_guest_600.csv").write_text("\n".join(guest) + "\n", encoding="utf-8")
    (directory / "nus_wide_train_host.csv").write_text("\n".join(host) + "\n", encoding="utf-8")


def test_missing_data_is_one_line_before_any_worker_and_a_failed_run_exits_3_until_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The data is checked once before training; a run that failed earlier is a kept outcome until retried."""
    data = tmp_path / "fate"
    study = _write(
        tmp_path,
        f'[study]\nname = "retry"\n[study.set]\n"data.name" = "nuswide_fate"\n"data.dir" = "{data}"\n'
        '"train.epochs" = 1\n[[grid]]\nname = "g"\n',
    )
    out = tmp_path / "out"
    (run,) = plan_runs(load_study(study))
    command = ["study", "--config", str(study), "--out", str(out), "--quiet"]

    assert main(command) == 2  # before any worker: nothing trained, nothing recorded
    err = capsys.readouterr().err
    assert "its data cannot be loaded" in err and "does not exist" in err
    assert not run_dir(out, run).exists()

    _write_fate_sample(data)
    failed = run_dir(out, run) / FAILED_NAME  # as an earlier invocation records a run that stopped
    failed.parent.mkdir(parents=True)
    failed.write_text(json.dumps({"error": "a message left CKKS's precise range", "type": "TrainingDiverged", "config": run.config}))
    recorded = failed.read_text()
    assert main(command) == 3  # without --retry-failed a failure is a kept outcome: not trained again
    assert failed.read_text() == recorded and not (run_dir(out, run) / RESULT_NAME).exists()

    assert main([*command, "--retry-failed"]) == 0
    assert not failed.exists()
    result = json.loads((run_dir(out, run) / RESULT_NAME).read_text())
    assert result["epochs_completed"] == 1 and result["config"]["data"]["dir"] == str(data)
    with (out / "study_runs.csv").open(encoding="utf-8") as handle:
        # trained to the end (one epoch on a handful of samples may end at chance: collapsed, an outcome too)
        assert [row["status"] for row in csv.DictReader(handle)] in (["ok"], ["collapsed"])


def test_reset_failed_drops_the_record_and_the_checkpoint_but_refuses_another_configs(tmp_path: Path) -> None:
    study = _write(tmp_path, '[study]\nname = "r"\n[study.set]\n"data.name" = "digits"\n[[grid]]\nname = "g"\n')
    (run,) = plan_runs(load_study(study))
    directory = run_dir(tmp_path / "out", run)
    assert reset_failed(tmp_path / "out", run) is False  # nothing recorded: nothing to reset
    directory.mkdir(parents=True)
    (directory / CHECKPOINT_NAME).write_bytes(b"state before the failure")
    (directory / FAILED_NAME).write_text(json.dumps({"error": "diverged", "config": run.config}), encoding="utf-8")
    assert reset_failed(tmp_path / "out", run) is True
    assert not (directory / FAILED_NAME).exists() and not (directory / CHECKPOINT_NAME).exists()

    other = json.loads(json.dumps(run.config))
    other["train"]["lr"] = 123.0
    (directory / FAILED_NAME).write_text(json.dumps({"error": "diverged", "config": other}), encoding="utf-8")
    with pytest.raises(ConfigError, match="different config"):
        reset_failed(tmp_path / "out", run)
    assert (directory / FAILED_NAME).is_file()


def test_study_file_expansion(tmp_path: Path) -> None:
    study = _write(
        tmp_path,
        """
[study]
name = "expand"
seeds = [3]
schemes = ["plain", "ckks/receiver"]
[study.set]
"data.name" = "digits"
defense = [{ kind = "gaussian_noise", variance = 0.5 }]
[[grid]]
name = "g"
seeds = [5, 6]
[grid.set.train]
lr = 0.2
[grid.variants]
sum = { "model.top" = "sum" }
deep = { model = { top = "trainable", top_hidden = [8] } }
[grid.axes]
"defense.0.variance" = [0.25, 1.0]
""",
    )
    runs = plan_runs(load_study(study))
    assert len(runs) == 2 * 2 * 2 * 2  # schemes x variants x variances x seeds
    assert {run.seed for run in runs} == {5, 6}  # the grid's seeds replace the study's
    run = next(r for r in runs if r.levels == {"scheme": "ckks/receiver", "variant": "deep", "defense.0.variance": "0.25"})
    assert run.config["protection"]["scheme"] == "ckks" and run.config["protection"]["key_holder"] == "receiver"
    assert run.config["model"]["top"] == "trainable" and run.config["model"]["top_hidden"] == [8]
    assert run.config["defense"][0]["variance"] == 0.25 and run.config["train"]["lr"] == 0.2
    assert run.config["train"]["progress"] is False
    assert run.run_id == f"g/ckks-receiver__deep__defense.0.variance=0.25__seed{run.seed}"


def test_impossible_placements_become_refused_runs_but_typos_stop_the_study(tmp_path: Path) -> None:
    base = """
[study]
name = "refusals"
schemes = ["plain", "ckks/receiver"]
[study.set]
"data.name" = "digits"
[[grid]]
name = "g"
[grid.set]
defense = [{ kind = "gaussian_noise", variance = 0.5, placement = "under_encryption" }]
"""
    runs = plan_runs(load_study(_write(tmp_path, base)))
    refused = {run.levels["scheme"]: run.refused for run in runs}
    assert refused["ckks/receiver"] is None
    assert refused["plain"] is not None and "plain scheme has no ciphertexts" in refused["plain"]
    outcomes = run_study([r for r in runs if r.refused], tmp_path / "out", show_progress=False, log=lambda _: None)
    assert [outcome.status for outcome in outcomes] == ["refused"]
    rows, _ = collect_rows(runs[:1], tmp_path / "out")
    assert rows[0]["status"] == "refused" and rows[0]["defenses"].startswith("gaussian_noise(variance=0.5")
    typo = base.replace("[grid.set]", '[grid.set]\n"train.epoch" = 3')
    with pytest.raises(ConfigError, match="unknown key 'train.epoch'; did you mean 'epochs'"):
        plan_runs(load_study(_write(tmp_path, typo, "typo.toml")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[study]\nname = "x"\n', "grids"),
        ('[study]\nname = "x"\n[[grid]]\nname = "g"\nx = "attack.gamma"\n', "not one of the grid's axes"),
        ('[study]\nname = "x"\nschemes = ["ckks"]\n[[grid]]\nname = "g"\n', "ckks/<key_holder>"),
        ('[study]\nname = "x"\n[[grid]]\nname = "g"\n[[grid]]\nname = "g"\n', "unique"),
        ('[study]\nname = "x"\n[grids]\n', "unknown top-level"),
        ('[study]\nname = "x"\nbase = "missing.toml"\n[[grid]]\nname = "g"\n', "base config not found"),
    ],
)
def test_bad_study_files_are_refused_with_a_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_study(_write(tmp_path, text))


def test_cli_reports_a_bad_study_as_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--config", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: study file not found: {tmp_path / 'nope.toml'}"


def test_set_path_and_flatten() -> None:
    raw: dict[str, Any] = {"defense": [{"kind": "gaussian_noise", "variance": 1.0}]}
    set_path(raw, "defense.0.variance", 0.5)
    set_path(raw, "train.lr", 0.1)
    assert raw == {"defense": [{"kind": "gaussian_noise", "variance": 0.5}], "train": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="list has 1 item"):
        set_path(raw, "defense.1.variance", 0.5)
    with pytest.raises(ConfigError, match="is a value, not a section"):
        set_path(raw, "train.lr.x", 1)
    assert flatten({"a": {"b": 1, "c.d": [1]}, "e": 2}) == {"a.b": 1, "a.c.d": [1], "e": 2}
    assert scheme_overrides("ckks/active/compute") == {
        "protection.scheme": "ckks", "protection.key_holder": "active", "protection.preset": "compute"
    }


def _agrees(committed: Any, planned: Any) -> bool:
    """Every value the committed record holds equals the planned one (later config fields are ignored)."""
    if isinstance(committed, dict):
        return isinstance(planned, dict) and all(key in planned and _agrees(value, planned[key]) for key, value in committed.items())
    if isinstance(committed, list):
        return isinstance(planned, list) and len(committed) == len(planned) and all(map(_agrees, committed, planned))
    return bool(committed == planned)


def test_the_attacks_defenses_study_plans_exactly_the_committed_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/studies/attacks_defenses_mnist.toml replaced the sweep script behind docs/results/attacks_defenses.json:
    one planned run per committed run, with the config that run recorded, and nothing else trained."""
    monkeypatch.setenv("SECUREVFL_DATA_DIR", "../shared/data")  # where the committed runs read MNIST from
    root = Path(__file__).resolve().parent.parent
    runs = plan_runs(load_study(root / "examples" / "studies" / "attacks_defenses_mnist.toml"))
    committed = json.loads((root / "docs" / "results" / "attacks_defenses.json").read_text(encoding="utf-8"))
    trained = [run for run in runs if run.refused is None]
    assert len(trained) == len(committed) == 58
    # the one refusal is the plaintext cell the script's report showed as refused
    assert [(run.run_id, "the plain scheme has no ciphertexts" in (run.refused or "")) for run in runs if run.refused] == [
        ("reduced/plain__backdoor_noise_under__seed0", True)
    ]
    matched: set[str] = set()
    for name, record in committed.items():
        if "failed" in record:  # no config recorded; counted above
            continue
        # 18 plaintext runs predate attack.record, when replaying the latest row was the only behaviour
        record["overrides_config"]["attack"].setdefault("record", "latest")
        # records are flat (every kind's fields); a config now keeps only its kind's fields
        record["overrides_config"]["attack"] = parse_attack_config(record["overrides_config"]["attack"]).model_dump(mode="json")
        candidates = [
            run.run_id
            for run in trained
            if _agrees(record["overrides_config"], run.config) and _agrees(record["defenses"], run.config["defense"])
        ]
        assert len(candidates) == 1, (name, candidates)
        matched.update(candidates)
    assert len(matched) == sum("failed" not in record for record in committed.values()) == 52


def test_a_study_plugin_registers_its_attack_in_the_study_and_in_every_worker(tmp_path: Path) -> None:
    from securevfl.attacks import unregister_attack

    study = _write(tmp_path, """
[study]
name = "plugin"
plugins = ["study_plugin_attack"]
[study.set]
"data.name" = "digits"
"data.train_limit" = 200
"data.test_limit" = 50
"train.epochs" = 1
"attack.kind" = "test_rows_seen"
[[grid]]
name = "probe"
""")
    try:
        summary = run_and_report(study, tmp_path / "out", workers=1, show_progress=False, log=lambda _: None)
        rows = json.loads((tmp_path / "out" / "study_runs.json").read_text())["rows"]
        # one epoch on 200 digits may end within 5 points of chance (collapsed): the metric is there either way
        assert rows[0]["status"] in ("ok", "collapsed") and f"1 {rows[0]['status']}" in summary and rows[0]["activation_rows_seen"] == 1.0
    finally:
        unregister_attack("test_rows_seen")
    with pytest.raises(ConfigError, match="study plugin 'no_such_module_xyz' cannot be imported"):
        load_study(_write(tmp_path, '[study]\nname = "x"\nplugins = ["no_such_module_xyz"]\n[[grid]]\nname = "g"\n', "bad.toml"))


def test_a_torn_run_record_is_named_moved_aside_and_trained_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = _write(tmp_path, '[study]\nname = "torn"\n[study.set]\n"train.epochs" = 1\n"data.train_limit" = 64\n"data.test_limit" = 32\n[[grid]]\nname = "g"\n')
    out = tmp_path / "out"
    (run,) = plan_runs(load_study(study))
    command = ["study", "--config", str(study), "--out", str(out), "--quiet"]
    assert main(command) == 0
    result = run_dir(out, run) / RESULT_NAME
    whole = result.read_text()
    result.write_text(whole[: len(whole) // 2])  # torn, as by a crash outside our atomic writes
    capsys.readouterr()
    assert main(command) == 0
    assert f"{result} is torn or unreadable: moved aside" in capsys.readouterr().err
    assert json.loads(result.read_text())["epochs_completed"] == 1
    assert (result.parent / (RESULT_NAME + ".unreadable")).read_text() == whole[: len(whole) // 2]


def test_reuse_from_copies_only_identical_finished_runs_and_says_so(tiny_study: tuple[Path, Path], tmp_path: Path) -> None:
    """--reuse-from: a run whose exact config another folder finished is copied (named in its row and
    the report), a run of another config trains, and the copy equals what training would give."""
    _, finished_out = tiny_study
    # the same cells under another grid name, gamma 1 is shared, gamma 5 is new; seed 0 only
    other = TINY.replace('"attack.gamma" = [1, 3]', '"attack.gamma" = [1, 5]').replace('name = "gamma"', 'name = "again"')
    other = other.replace("seeds = [0, 1]", "seeds = [0]")
    study = _write(tmp_path, other)
    out = tmp_path / "out"
    logged: list[str] = []
    summary = run_and_report(study, out, show_progress=False, log=logged.append, reuse_from=[finished_out])
    assert summary.exit_code == 0 and "reused 1 finished run(s)" in " ".join(logged)
    assert "2 runs: 1 to train, 1 finished earlier" in " ".join(logged)
    rows = {row["run_id"]: row for row in json.loads((out / "study_runs.json").read_text())["rows"]}
    shared, new = rows["again/plain__attack.gamma=1__seed0"], rows["again/plain__attack.gamma=5__seed0"]
    source = finished_out / "runs" / "gamma" / "plain__attack.gamma=1__seed0" / RESULT_NAME
    assert shared["reused_from"] == str(source.resolve()) and "reused_from" not in new
    copied = json.loads((out / "runs" / "again" / "plain__attack.gamma=1__seed0" / RESULT_NAME).read_text())
    assert copied == json.loads(source.read_text())
    assert copied["history"] == run_training(validate_config(plan_runs(load_study(study))[0].raw))["history"]
    assert f"1 from `{finished_out.resolve()}`" in (out / "report.md").read_text()


def test_reuse_from_never_copies_a_failure_that_is_not_the_configs_outcome(tmp_path: Path) -> None:
    from securevfl.study.reuse import reuse_finished_runs

    study = _write(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    runs = plan_runs(load_study(study))
    source = tmp_path / "source"
    for run, kind in zip(runs, ("DataError", "TrainingDiverged"), strict=True):
        run_dir(source, run).mkdir(parents=True)
        record = {"error": "x", "type": kind, "config": run.config}
        (run_dir(source, run) / FAILED_NAME).write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path / "out"
    assert reuse_finished_runs(runs, out, [source], log=lambda _: None) == 1
    assert not run_dir(out, runs[0]).exists() and (run_dir(out, runs[1]) / FAILED_NAME).is_file()
    with pytest.raises(ConfigError, match="not a study output folder"):
        reuse_finished_runs(runs, out, [tmp_path / "nowhere"], log=lambda _: None)


def _rows_without_source(out: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads((out / "study_runs.json").read_text())["rows"]
    return {row["run_id"]: {k: v for k, v in row.items() if k != "reused_from"} for row in rows}


def test_a_committed_table_without_its_run_folders_resumes_the_study_without_training(tiny_study: tuple[Path, Path], tmp_path: Path) -> None:
    """A snapshot that kept study_runs.json but not runs/ (a machine that lost its study folder): --reuse-from
    rebuilds every finished run's record from the table, trains nothing, and the tables come back the same."""
    study, finished_out = tiny_study
    snapshot = tmp_path / "committed"
    snapshot.mkdir()
    shutil.copy(finished_out / "study_runs.json", snapshot / "study_runs.json")
    out, logged = tmp_path / "out", []
    summary = run_and_report(study, out, show_progress=False, log=logged.append, reuse_from=[snapshot])
    assert summary.exit_code == 0 and "restored 4 finished or stopped run(s) from the table" in " ".join(logged)
    assert "4 runs: 0 to train, 4 finished earlier" in " ".join(logged)
    assert _rows_without_source(out) == _rows_without_source(finished_out)
    restored = json.loads((out / "runs" / "gamma" / "plain__attack.gamma=1__seed0" / RESULT_NAME).read_text())
    assert restored["restored"]["rebuilt_from_table"] and "visibility" in " ".join(restored["restored"]["lost"])
    assert f"4 from `{snapshot.resolve()}` (rebuilt from its table)" in (out / "report.md").read_text()


def test_a_table_row_of_another_config_is_not_restored_and_trains(tiny_study: tuple[Path, Path], tmp_path: Path) -> None:
    """A row is matched by its config_key (the whole config), so a setting no column shows (the learning rate) counts;
    a table that predates the key is matched by its config columns (here: epochs)."""
    study, finished_out = tiny_study
    payload = json.loads((finished_out / "study_runs.json").read_text())
    changed = _write(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [1]").replace('"train.lr" = 0.05', '"train.lr" = 0.5'), "lr.toml")
    snapshot = tmp_path / "committed"
    snapshot.mkdir()
    (snapshot / "study_runs.json").write_text(json.dumps(payload), encoding="utf-8")
    logged: list[str] = []
    run_and_report(changed, tmp_path / "out_lr", show_progress=False, log=logged.append, reuse_from=[snapshot])
    assert "their config differs from the study's now): gamma/plain__attack.gamma=1__seed1, gamma/plain__attack.gamma=3__seed1" in " ".join(logged)
    assert "2 runs: 2 to train, 0 finished earlier" in " ".join(logged)

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for row in payload["rows"]:
        row.pop("config_key")
        if row["run_id"] == "gamma/plain__attack.gamma=3__seed1":
            row["epochs"] = 5  # the study file said 5 epochs when this table was written
    (legacy / "study_runs.json").write_text(json.dumps(payload), encoding="utf-8")
    logged = []
    run_and_report(_write(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [1]")), tmp_path / "out_legacy", show_progress=False,
                   log=logged.append, reuse_from=[legacy])
    assert "their config differs from the study's now): gamma/plain__attack.gamma=3__seed1" in " ".join(logged)
    assert "matched by run id and config columns: this table has no config keys" in " ".join(logged)
    assert "2 runs: 1 to train, 1 finished earlier" in " ".join(logged)


def test_a_malformed_table_row_costs_its_run_a_retraining_and_nothing_else(tiny_study: tuple[Path, Path], tmp_path: Path) -> None:
    """Hostile or torn rows (a history that is not a list of epochs, a reason missing, a string where bytes are counted)
    are named and train again; the others are restored; nothing of theirs is written, and no checkpoint is touched."""
    study, finished_out = tiny_study
    payload = json.loads((finished_out / "study_runs.json").read_text())
    broken = {"gamma/plain__attack.gamma=1__seed0": "history", "gamma/plain__attack.gamma=3__seed0": "bytes"}
    payload["histories"]["gamma/plain__attack.gamma=1__seed0"] = "not a history"
    for row in payload["rows"]:
        if row["run_id"] == "gamma/plain__attack.gamma=3__seed0":
            row["bytes_activation"] = "many"
    snapshot = tmp_path / "committed"
    snapshot.mkdir()
    (snapshot / "study_runs.json").write_text(json.dumps(payload), encoding="utf-8")
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    checkpoint = run_dir(out, runs[0]) / CHECKPOINT_NAME
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"an interrupted attempt")
    from securevfl.study.reuse import reuse_finished_runs

    logged: list[str] = []
    assert reuse_finished_runs(runs, out, [snapshot], log=logged.append) == 2
    assert all(name in " ".join(logged) for name in broken)
    for run in runs:
        restored = (run_dir(out, run) / RESULT_NAME).is_file()
        assert restored == (run.run_id not in broken)
    assert checkpoint.read_bytes() == b"an interrupted attempt"


def test_a_stopped_run_rebuilt_from_a_table_keeps_its_stop(tmp_path: Path) -> None:
    """A diverged run's failure record (its stop epoch, reason and history) round-trips through the table."""
    from securevfl.study.reuse import reuse_finished_runs

    study = _write(tmp_path, TINY.replace("seeds = [0, 1]", 'seeds = [0]\nsummary_epochs = 2').replace('"train.epochs" = 2', '"train.epochs" = 3\n"train.max_loss" = 2.0'))
    first = tmp_path / "first"
    run_and_report(study, first, show_progress=False, log=lambda _: None)
    table = json.loads((first / "study_runs.json").read_text())
    assert {row["status"] for row in table["rows"]} & {"diverged", "collapsed"}, "the fixture must stop a run"
    snapshot = tmp_path / "committed"
    snapshot.mkdir()
    shutil.copy(first / "study_runs.json", snapshot / "study_runs.json")
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    assert reuse_finished_runs(runs, out, [snapshot], log=lambda _: None, summary_epochs=2) == len(runs)
    rows, histories = collect_rows(runs, out, summary_epochs=2)
    assert [{k: v for k, v in row.items() if k != "reused_from"} for row in rows] == [
        {k: v for k, v in row.items() if k != "reused_from"} for row in table["rows"]]
    assert histories == table["histories"]
    with pytest.raises(ConfigError, match="no runs/ or study_runs.json inside"):
        reuse_finished_runs(runs, out, [tmp_path / "nowhere"], log=lambda _: None)


def test_the_reports_regenerate_line_names_the_data_folder_it_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from securevfl.cli import _study_command

    argv = ["study", "--config", "s.toml", "--out", "out dir", "--report-only", "--quiet"]
    monkeypatch.delenv("SECUREVFL_DATA_DIR", raising=False)
    assert _study_command(argv) == "securevfl study --config s.toml --out 'out dir'"
    monkeypatch.setenv("SECUREVFL_DATA_DIR", "/data/my sets")
    assert _study_command(argv) == "SECUREVFL_DATA_DIR='/data/my sets' securevfl study --config s.toml --out 'out dir'"


def test_summary_epochs_changes_what_the_tables_report_not_what_was_trained(tiny_study: tuple[Path, Path], tmp_path: Path) -> None:
    _, finished_out = tiny_study
    out = tmp_path / "out"
    shutil.copytree(finished_out, out)
    study = _write(tmp_path, TINY.replace('seeds = [0, 1]', 'seeds = [0, 1]\nsummary_epochs = 2'))
    main(["study", "--config", str(study), "--out", str(out), "--report-only", "--quiet"])
    payload = json.loads((out / "study_runs.json").read_text())
    for row in payload["rows"]:
        history = payload["histories"][row["run_id"]]
        assert row["main_accuracy"] == pytest.approx((history[-1]["main_accuracy"] + history[-2]["main_accuracy"]) / 2)
        assert row["main_accuracy_last_epoch"] == history[-1]["main_accuracy"]
    assert "mean over its last 2 epochs" in (out / "report.md").read_text()


def test_every_plaintext_run_of_the_converged_ckks_study_is_a_run_of_part_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 2 copies its plaintext runs from part 1 (--reuse-from): each must be exactly one of part 1's configs,
    or it would train again (about an hour of compute) instead of being copied. Planning only: no data read."""
    from securevfl.study.runner import comparable_key

    monkeypatch.setenv("SECUREVFL_DATA_DIR", "../shared/data")
    studies = Path(__file__).resolve().parent.parent / "examples" / "studies"
    part_one = {comparable_key(run.config) for run in plan_runs(load_study(studies / "paper_mnist_converged.toml"))}
    part_two = plan_runs(load_study(studies / "paper_mnist_converged_ckks.toml"))
    plaintext = [run for run in part_two if run.cell.startswith("plain__") or run.cell == "plain"]
    # 45 plaintext runs of 42 configs: the grid defenses_wide repeats defenses' drop 0.97 runs beside transport_wide
    assert len(plaintext) == 45 and len({comparable_key(run.config) for run in plaintext}) == 42
    assert len(part_two) == 108 and all(run.refused is None for run in part_two)
    assert [run.run_id for run in plaintext if comparable_key(run.config) not in part_one] == []


def test_the_run_counts_docs_study_md_gives_for_the_converged_study_are_the_planned_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/study.md's table of the converged study's three files states each one's run count; a grid added or
    removed without the docs would make the table (and its compute estimate) wrong. Planning only: no data read."""
    monkeypatch.setenv("SECUREVFL_DATA_DIR", "../shared/data")
    root = Path(__file__).resolve().parent.parent
    rows = [line for line in (root / "docs" / "study.md").read_text().splitlines() if line.startswith("| `paper_mnist_converged")]
    stated = {}
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        stated[cells[0].strip("`")] = int(cells[2])
    assert set(stated) == {"paper_mnist_converged.toml", "paper_mnist_converged_ckks.toml", "paper_mnist_converged_survival.toml"}
    planned = {name: len(plan_runs(load_study(root / "examples" / "studies" / name))) for name in stated}
    assert stated == planned
