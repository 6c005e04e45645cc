"""The largest |activation| every epoch of a plaintext run: how much room a CKKS bound needs.

Every CKKS scheme refuses a value above its public bound and stops the run as ``out_of_range``: the
label-private schemes at ``protection.activation_bound`` (default 64), ``key_holder = "receiver"`` at
its preset's ``transport_bound``, half the decryptable ceiling (``transport`` 2^18, ``transport_wide``
2^21; before 2026-11-27 it was the preset's product headroom ``max_magnitude``, 512 and 2048, which
the summary also reports, for the study runs that stopped there). This trains a configuration in plaintext and prints, per epoch, main
accuracy, the attack's metrics and the largest |value| each party's bottom model produced (training
and evaluation batches, which are all sent), then the first epoch each bound was passed. Two uses:
state whether a setting fits a bound before spending hours under CKKS, and check a stopped CKKS run
against its plaintext twin (does plaintext pass the bound at the same epoch, and by how much later?).

    SECUREVFL_DATA_DIR=/work/shared/data python examples/activation_peaks.py --config examples/mnist_plain_sum.toml \
        --set data.train_limit=6000 --set data.test_limit=1000 --set train.lr=0.05 --set train.epochs=39 \
        --set 'defense=[{kind="label_dp", on="gradient", noise_multiplier=4.0}]'

    # the plaintext twin of a study run that stopped on the range check (its failed.json holds the config)
    python examples/activation_peaks.py --from-run runs/study-paper-converged-ckks/runs/working_backdoor/ckks-receiver__backdoor__seed0 \
        --json activation_peaks_seed0.json

It hooks each bottom model as the federation builds it (it wraps ``securevfl.federation.bottom_model``); the run
itself is the configured one, forced to plaintext (the same seed trains the same model as under CKKS up to
CKKS's ~1e-6 rounding, so the twin passes a bound where the encrypted run stopped).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import securevfl.federation as federation
from securevfl.config import apply_override, load_config, validate_config
from securevfl.crypto.params import get_preset
from securevfl.errors import SecureVFLError, TrainingDiverged
from securevfl.files import atomic_write_text
from securevfl.training import EpochRecord, run_training

RECEIVER_PRESETS = ("transport", "transport_wide")
"""The receiver-key presets whose input bound and decryptable ceiling the summary reports."""


def recorded_config(path: Path) -> dict[str, Any]:
    """The configuration a run recorded (``failed.json`` or ``result.json``, or a run folder holding one)."""
    candidates = [path] if path.is_file() else [path / "failed.json", path / "result.json"]
    for candidate in candidates:
        if candidate.is_file():
            try:
                config = json.loads(candidate.read_text(encoding="utf-8"))["config"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise SecureVFLError(f"{candidate}: not a run record with a 'config' ({type(exc).__name__})") from None
            if not isinstance(config, dict):
                raise SecureVFLError(f"{candidate}: its 'config' is not a table")
            return config
    raise SecureVFLError(f"{path}: no failed.json or result.json to read a configuration from")


def bounds(protection: Any) -> dict[str, float]:
    """Every bound a CKKS run of this setting could stop on, by name."""
    named = {"protection.activation_bound (label-private)": float(protection.activation_bound)}
    for name in RECEIVER_PRESETS:
        params = get_preset(name)
        named[f"{name} max_magnitude (receiver until 2026-11-27)"] = params.max_magnitude
        named[f"{name} transport_bound (receiver)"] = params.transport_bound
        named[f"{name} decryptable ceiling"] = params.decrypt_ceiling
    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="a run configuration (TOML)")
    source.add_argument("--from-run", type=Path, help="a run folder, or its failed.json / result.json: its recorded configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write every epoch's peaks and the summary here (refused if it exists)")
    args = parser.parse_args()
    if args.json is not None and args.json.exists():
        sys.exit(f"error: {args.json} exists; not overwritten")
    forced = [*args.overrides, 'protection.scheme="plain"', "train.progress=false", "train.checkpoint=false"]
    try:
        if args.config is not None:
            config = load_config(args.config, forced)
        else:
            raw = recorded_config(args.from_run)
            for override in forced:
                apply_override(raw, override)
            config = validate_config(raw)
    except SecureVFLError as exc:
        sys.exit(f"error: {exc}")

    epoch_peaks: dict[int, float] = {}
    build = federation.bottom_model

    def hooked(build_config: Any, index: int, *build_args: Any, **build_kwargs: Any) -> Any:
        model, optimizer = build(build_config, index, *build_args, **build_kwargs)

        def record(_module: Any, _inputs: Any, output: Any) -> None:
            epoch_peaks[index] = max(epoch_peaks.get(index, 0.0), float(output.detach().abs().max()))

        model.register_forward_hook(record)
        return model, optimizer

    federation.bottom_model = hooked  # type: ignore[assignment]
    n_passive = config.parties.passive
    rows: list[dict[str, Any]] = []

    def report(record: EpochRecord) -> None:
        peaks = {(f"passive_{i + 1}" if i < n_passive else "active"): round(v, 4) for i, v in sorted(epoch_peaks.items())}
        rows.append({"epoch": record.epoch, "main_accuracy": record.main_accuracy, "loss": record.loss, **record.attack_metrics, "peaks": peaks})
        attack = "  ".join(f"{k} {v:.3g}" for k, v in sorted(record.attack_metrics.items()))
        shown = "  ".join(f"{k} {v:10.4g}" for k, v in peaks.items())
        print(f"epoch {record.epoch:>3}  main {100 * record.main_accuracy:5.1f} %  loss {record.loss:9.4g}  {attack}  max |H|: {shown}", flush=True)
        epoch_peaks.clear()

    stopped = None
    try:
        run_training(config, on_epoch_end=[report])
    except TrainingDiverged as exc:  # the plaintext twin may stop too: say so, keep what it measured
        stopped = str(exc)
        print(f"the plaintext run stopped: {stopped}", flush=True)

    summary = {}
    for name, bound in bounds(config.protection).items():
        first = next((row["epoch"] for row in rows if max(row["peaks"].values(), default=0.0) > bound), None)
        summary[name] = {"bound": bound, "first_epoch_above": first}
        print(f"{name:52} {bound:12.6g}  first passed at epoch {first if first is not None else '- (never)'}")
    run_peak = max((max(row["peaks"].values(), default=0.0) for row in rows), default=0.0)
    print(f"largest |H| over the run: {run_peak:.6g}")
    if args.json is not None:
        record = {"source": str(args.config or args.from_run), "overrides": args.overrides, "stopped": stopped,
                  "largest": run_peak, "bounds": summary, "epochs": rows}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
