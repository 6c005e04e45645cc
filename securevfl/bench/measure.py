"""Measure one protection scheme: set-up, training steps, evaluation, bytes, peak memory.

Each scheme runs in a fresh process (``multiprocessing`` with the *spawn* start method), so
that one scheme's key material, SEAL memory pools and warmed caches neither help nor burden the
next, and so that ``ru_maxrss`` (the process's peak resident memory, which can only grow) is
that scheme's own peak. The numbers returned are raw measurements over what was actually run;
scaling them to an epoch happens in :mod:`securevfl.bench.report`, in one place.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securevfl.bench.schemes import SchemeSpec, Top
from securevfl.bench.workload import EpochShape
from securevfl.threads import limit_threads
from securevfl.errors import BenchChildError, BenchCrashError, SecureVFLError

__all__ = ["BenchChildError", "BenchCrashError", "measure_scheme", "peak_rss_mb", "run_isolated"]

MEMORY_METHOD = "resource.getrusage(RUSAGE_SELF).ru_maxrss of a fresh spawned process per scheme"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6, 1)


class _Counters:
    """Cumulative phase seconds and traffic of a federation, to take differences of."""

    def __init__(self, federation: Any | None = None) -> None:
        """The federation's totals now; all zero when ``federation`` is None."""
        self.phases: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        if federation is not None:
            self.phases.update(federation.timer.seconds)
            self.phases.update(federation.channel.stats.timer.seconds)
            self.bytes.update(federation.channel.stats.bytes_by_kind)
            self.messages.update(federation.channel.stats.messages_by_kind)

    def since(self, earlier: _Counters) -> dict[str, dict[str, float]]:
        return {
            "phases": _difference(self.phases, earlier.phases, digits=6),
            "bytes": _difference(self.bytes, earlier.bytes),
            "messages": _difference(self.messages, earlier.messages),
        }


def _difference(later: Counter[str], earlier: Counter[str], digits: int | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in sorted(later):
        value = later[key] - earlier.get(key, 0)
        if value:
            out[key] = round(value, digits) if digits is not None else value
    return out


def measure_scheme(
    spec: SchemeSpec, top: Top, shape: EpochShape, rows: tuple[int, int], data_dir: Path | None = None
) -> dict[str, Any]:
    """Build the MNIST federation under ``spec`` on ``rows`` (train, test) rows and time it.

    ``mode = "epoch"``: every step of one epoch, then the whole test set, as ``run_training``
    does. ``mode = "steps"``: the epoch's first ``warmup`` steps untimed (first-use costs),
    the next ``steps`` timed, then the first ``eval_samples`` test samples.
    """
    from securevfl.bench.schemes import run_config
    from securevfl.bench.workload import load_workload
    from securevfl.data import partition_columns
    from securevfl.federation import build_federation
    from securevfl.seeding import epoch_batches

    memory = {"method": MEMORY_METHOD, "after_imports_mb": peak_rss_mb()}
    dataset = load_workload(data_dir, *rows)
    memory["after_data_mb"] = peak_rss_mb()
    config = run_config(spec, top, shape)
    n_train, n_test_rows = len(dataset.y_train), len(dataset.y_test)
    batches = epoch_batches(n_train, shape.batch_size, config.train.seed, 1)
    full = spec.mode == "epoch"
    warmup = 0 if full else spec.warmup
    last = len(batches) if full else warmup + spec.steps
    n_test = n_test_rows if full else min(spec.eval_samples, n_test_rows)
    if last > len(batches):
        raise ValueError(f"{spec.key}: {warmup} + {spec.steps} steps need {last} batches, the data holds {len(batches)}")

    limit_threads(config.train.threads)
    blocks = partition_columns(dataset, config.parties)
    started = time.perf_counter()
    federation = build_federation(config, dataset, blocks)
    setup_seconds = time.perf_counter() - started
    memory["after_setup_mb"] = peak_rss_mb()
    after_setup = _Counters(federation)

    for step in range(warmup):
        federation.train_batch(step, batches[step])
    before_train = _Counters(federation)
    step_seconds = []
    for step in range(warmup, last):
        tick = time.perf_counter()
        federation.train_batch(step, batches[step])
        step_seconds.append(time.perf_counter() - tick)
    after_train = _Counters(federation)

    tick = time.perf_counter()
    federation.evaluate(n_test, shape.eval_batch_size, step=last)
    eval_seconds = time.perf_counter() - tick
    after_eval = _Counters(federation)
    memory["peak_mb"] = peak_rss_mb()

    return {
        "spec": spec.to_dict(),
        "top": top,
        "data": dataset.name,
        "message_shape": _message_shape(federation, shape),
        "setup": {"seconds": round(setup_seconds, 6), **after_setup.since(_Counters())},
        "warmup_steps": warmup,
        "train": {
            "steps": len(step_seconds),
            "seconds": round(sum(step_seconds), 6),
            "step_seconds": {
                "mean": round(statistics.fmean(step_seconds), 6),
                "median": round(statistics.median(step_seconds), 6),
                "min": round(min(step_seconds), 6),
                "max": round(max(step_seconds), 6),
            },
            **after_train.since(before_train),
        },
        "eval": {"samples": n_test, "seconds": round(eval_seconds, 6), **after_eval.since(after_train)},
        "memory": memory,
    }


def _message_shape(federation: Any, shape: EpochShape) -> list[int]:
    """Batch x width of each passive party's activation (the width of its bottom model's output)."""
    model = federation.passives[0].model
    widths = [module.out_features for module in model.modules() if hasattr(module, "out_features")]
    return [shape.batch_size, int(widths[-1])]


def _child(target: Callable[..., dict[str, Any]], args: tuple[Any, ...], connection: Any) -> None:
    try:
        result: dict[str, Any] = {"ok": target(*args)}
    except SecureVFLError as exc:
        result = {"error": str(exc), "user_error": True}
    except Exception:  # noqa: BLE001 -- a bug: hand the traceback to the parent, which raises with it
        result = {"error": traceback.format_exc(), "user_error": False}
    connection.send(result)
    connection.close()


def run_isolated(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``target(*args)`` in a fresh spawned process and return its result dict.

    ``target`` must be a module-level function (spawn pickles it by name). The child's peak
    memory is its own: nothing allocated here, in the parent, is counted.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, args, sender), daemon=True)
    process.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        process.join()
        raise BenchCrashError(f"measurement process died with exit code {process.exitcode}") from None
    finally:
        receiver.close()
    process.join()
    if "error" in result:
        if result["user_error"]:
            raise BenchChildError(result["error"])
        raise BenchCrashError(f"measurement process failed:\n{result['error']}")
    return result["ok"]
