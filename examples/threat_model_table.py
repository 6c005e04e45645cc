"""The attack x scheme x hardening table of docs/threat-model.md, measured on MNIST.

Every cell is one training run of the paper's MNIST models (batch 64) with one attack attached:

- ``gradient_inversion`` (curious passive; sum top, bottom 392 -> 32 -> 10): labels read from the
  batch-summed parameter gradients it learns;
- ``key_recovery`` (malicious passive; same models): key recovered from two decryptions, then labels
  read by decrypting its gradient rows;
- ``row_request`` (malicious passive; same models): its own encrypted gradient rows decrypted in
  its last layer's request slot;
- ``activation_inversion`` (curious active party; trainable top, bottom 392 -> 32, top 64 -> 32 -> 10):
  passives' activation rows recovered;
- ``active_key_recovery`` (malicious active party, coordinator scheme; sum top): the coordinator's
  key from two spare requests, then every passive's activation rows decrypted.

Schemes: plain, ckks/receiver, ckks/active, ckks/coordinator. Hardening of the label-private
schemes: ``none`` (no flooding, no decryption policy: the key holder of v0.1) and ``key holder``
(noise flooding at 30 bits and the protocol's decryption policy: the default). Further hardening
rows (label-DP noise, the sealed source layer) are added with ``--extra NAME=OVERRIDES``.

Reduced so the table fits a session (stated in the output): ``--train`` training samples (default
1,280: 20 steps), ``--test`` test samples, one epoch, seed 0. Results go to ``--out`` (JSON, one entry per
cell, written atomically after each run; cells already there are skipped) and a Markdown table
beside it. Runs that fail are recorded with their error, never dropped.

    python examples/threat_model_table.py --data /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from securevfl.config import load_config
from securevfl.files import atomic_write_text
from securevfl.training import run_training

ROOT = Path(__file__).resolve().parents[1]
SUM_TOP: list[str] = []
TRAINABLE_TOP = ["model.top=trainable", "model.bottom_hidden=[]", "model.bottom_output=32", "model.top_hidden=[32]"]
SCHEMES = {
    "plain": ["protection.scheme=plain"],
    "ckks/receiver": ["protection.scheme=ckks", "protection.key_holder=receiver"],
    "ckks/active": ["protection.scheme=ckks", "protection.key_holder=active"],
    "ckks/coordinator": ["protection.scheme=ckks", "protection.key_holder=coordinator"],
}
HARDENING = {
    "none": ["protection.flooding_bits=0", "protection.decryption_policy=none", "protection.activation_masks=none"],  # v0.1
    "key holder": [],
}
ATTACKS = {
    "gradient_inversion": (SUM_TOP, ["inversion_label_accuracy"]),
    "key_recovery": (SUM_TOP, ["key_recovered", "key_recovery_label_accuracy"]),
    "row_request": (SUM_TOP, ["row_request_label_accuracy", "row_request_coverage"]),
    "activation_inversion": (TRAINABLE_TOP, ["activation_rows_recovered", "activation_recovery_error"]),
    "active_key_recovery": (SUM_TOP, ["key_recovered", "key_recovery_activation_rows"]),
    "flooding_key_recovery": (SUM_TOP, ["key_recovered", "key_recovery_label_accuracy"]),
    "active_flooding_key_recovery": (SUM_TOP, ["key_recovered", "key_recovery_activation_rows"]),
    "active_own_slot": (SUM_TOP, ["own_slot_activation_rows"]),
}
EVALUATION_KINDS = {"eval_activation", "public_key"}


def cells(
    extra: dict[str, list[str]],
    level_attacks: dict[str, set[str]] | None = None,
    level_schemes: dict[str, set[str]] | None = None,
) -> list[tuple[str, str, str, list[str]]]:
    """(attack, scheme, hardening, overrides) for every cell of the table.

    ``level_attacks`` / ``level_schemes`` restrict a hardening level to some attacks or schemes
    (e.g. a multi-epoch row for one attack, a costly variant under one key holder).
    """
    hardening = {**HARDENING, **extra}
    level_attacks = level_attacks or {}
    level_schemes = level_schemes or {}
    out = []
    for attack, (model, _) in ATTACKS.items():
        for scheme, scheme_overrides in SCHEMES.items():
            levels = hardening if scheme in ("ckks/active", "ckks/coordinator") else {"-": []}
            for level, level_overrides in levels.items():
                if level in level_attacks and attack not in level_attacks[level]:
                    continue
                if level in level_schemes and scheme not in level_schemes[level]:
                    continue
                out.append((attack, scheme, level, [*scheme_overrides, *model, *level_overrides, f"attack.kind={attack}"]))
    return out


def run_cell(overrides: list[str], data: str, train: int, test: int) -> dict[str, Any]:
    base = [f"data.dir={data}", f"data.train_limit={train}", f"data.test_limit={test}", "train.epochs=1",
            "train.progress=false", "train.batch_size=64", "train.seed=0"]
    config = load_config(ROOT / "examples" / "mnist_plain_sum.toml", [*base, *overrides])
    started = time.perf_counter()
    result = run_training(config)
    seconds = time.perf_counter() - started
    steps = math.ceil(train / 64) * result["epochs_completed"]
    last = result["history"][-1]
    training_bytes = sum(v for k, v in result["bytes_sent"].items() if k not in EVALUATION_KINDS)
    return {
        "main_accuracy": last["main_accuracy"],
        "attack_feasible": result["attack_feasible"],
        "attack_infeasible_reason": result["attack_infeasible_reason"],
        "metrics": {k: v for k, v in last.items() if k not in ("epoch", "loss", "main_accuracy")},
        "seconds_per_step": sum(result["timing"]["epoch_seconds"]) / steps,
        "bytes_per_step": training_bytes / steps,
        "wall_seconds": seconds,
        "epochs": result["epochs_completed"],
        "history": result["history"],
    }


def table(results: dict[str, Any], train: int, test: int) -> str:
    lines = [
        f"MNIST, batch 64, {train} training samples ({math.ceil(train / 64)} steps per epoch; one epoch unless the "
        f"hardening names more), {test} test samples, seed 0. Attack results are the last epoch's. Seconds per step "
        "include the end-of-epoch evaluation; bytes per step exclude key announcements and evaluation traffic.",
        "",
        "| attack | scheme | hardening | attack result | main acc. | s/step | MB/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, entry in sorted(results.items()):
        attack, scheme, level = key.split(" | ")
        if "error" in entry:
            lines.append(f"| {attack} | {scheme} | {level} | run failed: {entry['error']} | | | |")
            continue
        if not entry["attack_feasible"]:
            outcome = f"infeasible: {entry['attack_infeasible_reason']}"
        else:
            shown = [f"{name} {entry['metrics'][name]:.3g}" for name in ATTACKS[attack][1] if entry["metrics"].get(name) is not None]
            outcome = ", ".join(shown) or "no metric reported"
        lines.append(
            f"| {attack} | {scheme} | {level} | {outcome} | {entry['main_accuracy']:.3f} | "
            f"{entry['seconds_per_step']:.2f} | {entry['bytes_per_step'] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory of the MNIST IDX files")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "threat_model" / "results.json")
    parser.add_argument("--train", type=int, default=1280)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--only", default=None, help="run only cells whose key contains this text")
    parser.add_argument("--extra", action="append", default=[], help="NAME=override;override: another hardening row")
    parser.add_argument("--level-attacks", action="append", default=[], help="NAME=attack,attack: run hardening NAME only for these")
    parser.add_argument("--level-schemes", action="append", default=[], help="NAME=scheme,scheme: run hardening NAME only under these")
    parser.add_argument("--skip-schemes", default="", help="comma-separated schemes to leave out (e.g. ckks/receiver)")
    parser.add_argument("--retry-failed", action="store_true", help="run again the cells recorded as failed (says which)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"error: no MNIST data at {args.data}", file=sys.stderr)
        return 2
    extra = {}
    for item in args.extra:
        name, _, overrides = item.partition("=")
        extra[name] = [o for o in overrides.split(";") if o]  # the name ends at the first '=' 
    level_attacks: dict[str, set[str]] = {}
    for item in args.level_attacks:
        name, _, attacks = item.partition("=")
        level_attacks[name] = set(attacks.split(","))
    level_schemes: dict[str, set[str]] = {}
    for item in args.level_schemes:
        name, _, schemes = item.partition("=")
        level_schemes[name] = set(schemes.split(","))
    skipped = {scheme for scheme in args.skip_schemes.split(",") if scheme}
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    for attack, scheme, level, overrides in cells(extra, level_attacks, level_schemes):
        key = f"{attack} | {scheme} | {level}"
        retry = args.retry_failed and "error" in results.get(key, {})
        if (key in results and not retry) or (args.only and args.only not in key) or scheme in skipped:
            continue
        if retry:
            print(f"retrying {key} (recorded failure: {results[key]['error'][:120]})", flush=True)
        print(f"running {key}", flush=True)
        try:
            results[key] = run_cell(overrides, args.data, args.train, args.test)
        except Exception as exc:  # noqa: BLE001 - a failed run is a result, recorded with its error
            results[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        atomic_write_text(args.out, json.dumps(results, indent=2, sort_keys=True) + "\n")
        atomic_write_text(args.out.with_name("results.md"), table(results, args.train, args.test))
    print(table(results, args.train, args.test))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
