"""``securevfl bench``: measure every scheme side by side and assemble the report.

Schemes run one after another, each in its own spawned process (see
:mod:`securevfl.bench.measure`), never concurrently: on a small machine two measurements at
once would each slow the other down and the ratios would mean nothing. The Paillier/CKKS
per-message comparison runs last, in this process.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securevfl.version import __version__
from securevfl.bench.measure import MEMORY_METHOD, measure_scheme, run_isolated
from securevfl.bench.paillier import paillier_vs_ckks
from securevfl.bench.report import PAILLIER_KEY, add_ratios, derive_scheme, evaluate_targets, paillier_row
from securevfl.bench.schemes import PAILLIER, QUICK_ROWS, SchemeSpec, Top, scheme_matrix, select_schemes
from securevfl.bench.workload import MNIST_EPOCH, EpochShape
from securevfl.errors import ConfigError
from securevfl.schemes import PlainScheme

__all__ = ["BenchSettings", "run_bench"]


FEATURES_PER_PARTY = 392
PAILLIER_SHAPES = [(64, 10), (64, 32)]


@dataclass(frozen=True)
class BenchSettings:
    """What ``securevfl bench`` was asked to do.

    ``paillier_values``: how many values of each message Paillier encrypts for real (default 8
    with ``quick``, else 64); the per-value cost is scaled to the 640 or 2,048 values.
    ``only``: scheme keys to keep (``plain``, ``ckks/receiver/transport``, ..., ``paillier``).
    """

    quick: bool = False
    top: Top = "sum"
    data_dir: Path | None = None
    only: tuple[str, ...] = ()
    paillier_values: int | None = None
    shape: EpochShape = MNIST_EPOCH
    command: str = "securevfl bench"
    specs: tuple[SchemeSpec, ...] = field(default=())

    def schemes(self) -> list[SchemeSpec]:
        return select_schemes(list(self.specs) or scheme_matrix(self.quick), self.only)

    @property
    def with_paillier(self) -> bool:
        return not self.only or PAILLIER in self.only


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def run_bench(settings: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure, derive and return the whole report (the content of ``bench.json``)."""
    if settings.paillier_values is not None and settings.paillier_values < 1:
        raise ConfigError("bench --paillier-values must be at least 1")
    if settings.data_dir is not None and not settings.data_dir.is_dir():
        raise ConfigError(f"bench --data-dir: no such directory: {settings.data_dir}")
    specs = settings.schemes()
    shape = settings.shape
    report: dict[str, Any] = {
        "version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": settings.command,
        "quick": settings.quick,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_start": _load_average(),
        },
        "workload": {
            "data": "mnist" if settings.data_dir else "mnist_shaped_random",
            "parties": 2,
            "features_per_party": FEATURES_PER_PARTY,
            "top": settings.top,
            "message_shape": [shape.batch_size, 10 if settings.top == "sum" else 32],
            "epoch": shape.to_dict(),
        },
        "memory_method": MEMORY_METHOD,
    }
    # every scheme holds the same rows, whatever part of the epoch it runs: comparable memory
    rows_loaded = QUICK_ROWS if settings.quick else (shape.n_train, shape.n_test)
    report["workload"]["rows_loaded"] = {"train": rows_loaded[0], "test": rows_loaded[1]}
    raw: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for spec in specs:
        what = "a full epoch" if spec.mode == "epoch" else f"{spec.warmup} + {spec.steps} steps"
        log(f"measuring {spec.key} ({what}) ...")
        started = time.perf_counter()
        measurement = run_isolated(measure_scheme, spec, settings.top, shape, rows_loaded, settings.data_dir)
        raw[spec.key] = measurement
        rows[spec.key] = derive_scheme(measurement, shape)
        row = rows[spec.key]
        log(
            f"  {spec.key}: {row['step_seconds'] * 1e3:.1f} ms/step, {row['epoch_seconds']:.1f} s/epoch"
            f"{' (extrapolated)' if row['extrapolated'] else ''}  [{time.perf_counter() - started:.0f} s]"
        )
        report["workload"]["message_shape"] = measurement["message_shape"]
        report["workload"]["data"] = measurement["data"]

    comparison = None
    message = "x".join(str(n) for n in report["workload"]["message_shape"])
    if settings.with_paillier:
        values = settings.paillier_values or (8 if settings.quick else 64)
        log(f"measuring Paillier (2048-bit; {values} value(s) per message timed) vs CKKS ...")
        comparison = paillier_vs_ckks(PAILLIER_SHAPES, values)
        if PlainScheme.name in rows and message in comparison["messages"]:
            rows[PAILLIER_KEY] = paillier_row(comparison, rows[PlainScheme.name], shape)
    add_ratios(rows)
    report["schemes"] = rows
    report["paillier"] = comparison
    report["targets"] = evaluate_targets(rows, comparison, message)
    report["machine"]["load_average_end"] = _load_average()
    report["raw"] = raw
    return report
