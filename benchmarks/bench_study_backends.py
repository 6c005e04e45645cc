"""A study's wall time per backend (local process pool, Ray) and worker count, and the proof that
both backends give the same tables (issue 15, item 1).

Usage::

    SECUREVFL_DATA_DIR=/work/shared/data python benchmarks/bench_study_backends.py \
        [--work runs/bench_study_backends] [--json FILE.json] [--markdown FILE.md] [--mnist-epochs 3]

Two parts, each a ``securevfl study`` command in its own interpreter (so every Ray start is a fresh
local instance, as a user's command would be):

1. **Same tables**: ``examples/studies/quick_digits.toml`` (28 runs: plaintext and ckks/receiver, 2
   seeds) with ``--backend local`` and ``--backend ray``, both ``--workers 2``. The tables must agree:
   every row equal except its wall times; plaintext histories bit for bit; CKKS histories within
   CKKS's noise (fresh encryption randomness per run: the largest difference is reported).
2. **Wall time on MNIST per backend and worker count**: a slice of the converged paper study
   (``examples/studies/paper_mnist_converged.toml``'s Table-2 baselines: clean, the backdoor's control,
   label inference; full MNIST, seeds 0-1, ``--mnist-epochs`` epochs, 6 runs) with local and Ray at 1 and
   2 workers. The whole 290-run study is far too long to repeat four times; its per-run cost is the
   slice's, and the slice shows each backend's fixed start-up and per-run overhead. Skipped, with the
   reason, when ``$SECUREVFL_DATA_DIR/mnist`` is absent.

Run it on a quiet machine: every number here is a wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from securevfl.files import write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS_STUDY = ROOT / "examples" / "studies" / "quick_digits.toml"
MNIST_BASE = ROOT / "examples" / "mnist_plain_sum.toml"
TIMING = ("mean_epoch_seconds", "train_seconds")
CLI = "import sys; from securevfl.cli import main; sys.exit(main(sys.argv[1:]))"
#: (backend, workers) for the MNIST slice
COMBINATIONS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


def mnist_slice(epochs: int) -> str:
    """The converged study's Table-2 baselines grid, full MNIST, 2 seeds, ``epochs`` epochs."""
    return f"""[study]
name = "backend-timing-mnist"
base = "{MNIST_BASE.as_posix()}"
seeds = [0, 1]
schemes = ["plain"]
[study.set]
"train.epochs" = {epochs}
"attack.target_label" = 0
"attack.party" = "passive_2"
[[grid]]
name = "sum_baselines"
[grid.variants]
clean = {{ "attack.kind" = "none" }}
control = {{ "attack.kind" = "backdoor_control" }}
label_inference = {{ "attack.kind" = "label_inference" }}
"""


def run_study(config: Path, out: Path, backend: str, workers: int) -> dict[str, Any]:
    """One ``securevfl study`` command in a fresh interpreter into an empty ``out``; its wall time and exit code."""
    if out.exists():
        shutil.rmtree(out)
    command = ["study", "--config", str(config), "--out", str(out), "--workers", str(workers), "--backend", backend, "--quiet"]
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", CLI, *command], capture_output=True, text=True, check=False)
    wall = round(time.perf_counter() - started, 2)
    payload = json.loads((out / "study_runs.json").read_text(encoding="utf-8")) if (out / "study_runs.json").is_file() else {}
    rows = payload.get("rows", [])
    return {
        "backend": backend,
        "workers": workers,
        "wall_seconds": wall,
        "exit_code": finished.returncode,
        "stderr_tail": finished.stderr.strip().splitlines()[-3:],
        "runs": len(rows),
        "statuses": sorted({str(row["status"]) for row in rows}),
        "train_seconds_sum": round(sum(float(row.get("train_seconds") or 0) for row in rows), 2),
        "command": "securevfl " + " ".join(command),
    }


def compare_tables(local: Path, ray: Path) -> dict[str, Any]:
    """Rows equal but for wall times; plaintext histories identical; CKKS histories' largest difference."""
    a, b = (json.loads((out / "study_runs.json").read_text(encoding="utf-8")) for out in (local, ray))
    strip = lambda rows: [{k: v for k, v in row.items() if k not in TIMING} for row in rows]  # noqa: E731
    ckks_rows = [row for row in a["rows"] if row.get("scheme") != "plain"]
    plain_ids = [row["run_id"] for row in a["rows"] if row.get("scheme") == "plain"]
    ckks_ids = [row["run_id"] for row in ckks_rows]
    plain_equal = all(a["histories"].get(rid) == b["histories"].get(rid) for rid in plain_ids)  # stopped runs: none
    largest = 0.0
    for rid in ckks_ids:
        if (rid in a["histories"]) != (rid in b["histories"]):
            largest = float("inf")  # one backend finished a run the other stopped
            continue
        for mine, theirs in zip(a["histories"].get(rid, []), b["histories"].get(rid, []), strict=True):
            for key, value in mine.items():
                if isinstance(value, float) and isinstance(theirs.get(key), float):
                    largest = max(largest, abs(value - theirs[key]))
    plain_rows_equal = [r for r in strip(a["rows"]) if r.get("scheme") == "plain"] == [r for r in strip(b["rows"]) if r.get("scheme") == "plain"]
    statuses_equal = [r["status"] for r in a["rows"]] == [r["status"] for r in b["rows"]]
    return {
        "runs": len(a["rows"]),
        "plaintext_runs": len(plain_ids),
        "ckks_runs": len(ckks_ids),
        "plaintext_rows_equal_but_wall_times": plain_rows_equal,
        "plaintext_histories_bit_identical": plain_equal,
        "statuses_equal": statuses_equal,
        "ckks_largest_history_difference": largest,
    }


def markdown(report: dict[str, Any]) -> str:
    same = report["same_tables"]
    lines = [
        "# Study backends: same tables, wall time per backend and worker count",
        "",
        f"Written by `python benchmarks/bench_study_backends.py` on {report['machine']['cpus']} CPUs "
        f"({report['machine']['platform']}), load average {report['machine']['load_before']} before the first command.",
        "",
        "## quick_digits under both backends (`--workers 2`)",
        "",
        "| backend | runs | statuses | exit | wall s | command |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["digits"]:
        lines.append(f"| {row['backend']} | {row['runs']} | {', '.join(row['statuses'])} | {row['exit_code']} | {row['wall_seconds']} | `{row['command']}` |")
    lines += [
        "",
        f"- plaintext rows equal apart from wall times: **{same['plaintext_rows_equal_but_wall_times']}**; "
        f"plaintext histories bit-identical: **{same['plaintext_histories_bit_identical']}** ({same['plaintext_runs']} runs)",
        f"- every run's status equal: **{same['statuses_equal']}**; CKKS runs ({same['ckks_runs']}): largest difference of any "
        f"history value between the backends {same['ckks_largest_history_difference']:.3g} (fresh encryption randomness per run)",
        "",
    ]
    if report.get("mnist") is None:
        lines += ["## MNIST slice", "", f"Not run: {report['mnist_skipped']}", ""]
        return "\n".join(lines)
    lines += [
        f"## MNIST slice: the Table-2 baselines, full MNIST, seeds 0-1, {report['mnist_epochs']} epochs ({report['mnist'][0]['runs']} runs)",
        "",
        "| backend | workers | wall s | sum of runs' training s | runs/h | exit |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["mnist"]:
        per_hour = 3600 * row["runs"] / row["wall_seconds"] if row["wall_seconds"] else 0
        lines.append(f"| {row['backend']} | {row['workers']} | {row['wall_seconds']} | {row['train_seconds_sum']} | {per_hour:.0f} | {row['exit_code']} |")
    lines += [
        "",
        "Wall time includes the interpreter, loading MNIST once for the data check, the workers' start "
        "(spawned processes, or a local Ray instance and its workers) and writing tables and report.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench_study_backends"))
    parser.add_argument("--mnist-epochs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": round(os.getloadavg()[0], 2)},
        "digits": [run_study(DIGITS_STUDY, args.work / f"digits-{backend}", backend, 2) for backend in ("local", "ray")],
    }
    report["same_tables"] = compare_tables(args.work / "digits-local", args.work / "digits-ray")
    data = Path(os.environ.get("SECUREVFL_DATA_DIR", "")) / "mnist"
    if os.environ.get("SECUREVFL_DATA_DIR") and data.is_dir():
        config = args.work / "mnist_slice.toml"
        config.write_text(mnist_slice(args.mnist_epochs), encoding="utf-8")
        report["mnist_epochs"] = args.mnist_epochs
        report["mnist"] = [run_study(config, args.work / f"mnist-{b}-{w}", b, w) for b, w in COMBINATIONS]
    else:
        report["mnist"], report["mnist_skipped"] = None, "SECUREVFL_DATA_DIR/mnist is absent"
    report["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    text = markdown(report)
    print(text)
    write_report(report, args.json, text, args.markdown)
    bad = [row for row in report["digits"] + (report["mnist"] or []) if row["exit_code"] not in (0, 3)]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
