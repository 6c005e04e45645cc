"""What the key holder's noise flooding costs in MNIST accuracy and time, against plaintext.

Same seed, same batches: the plaintext run, the label-private runs with the default key holder
(``protection.flooding_bits = 30``) and, as a control, one without flooding. Paper models (sum top,
392 -> 32 -> 10 bottoms), batch 64, lr 0.01, reduced to ``--train`` training samples and
``--test`` test samples (stated in the output). Runs live in ``--runs`` (one folder per run; a
finished one is not trained again) and the table goes to ``--out``.

    python examples/flooding_accuracy.py --data /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from securevfl.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "plain": ("mnist_plain_sum.toml", []),
    "ckks/coordinator, no flooding": ("mnist_ckks_coordinator.toml", ["protection.flooding_bits=0", "protection.decryption_policy=none"]),
    "ckks/coordinator, flooding 30": ("mnist_ckks_coordinator.toml", []),
    "ckks/active, flooding 30": ("mnist_ckks_active.toml", []),
}


def run(name: str, seed: int, epochs: int, args: argparse.Namespace) -> dict[str, Any]:
    config, extra = VARIANTS[name]
    folder = args.runs / f"{name.replace('/', '-').replace(', ', '_').replace(' ', '')}_s{seed}_{epochs}ep"
    if not (folder / "result.json").is_file():
        overrides = [f"data.dir={args.data}", f"data.train_limit={args.train}", f"data.test_limit={args.test}",
                     f"train.epochs={epochs}", f"train.seed={seed}", "train.progress=false", *extra]
        beside = Path(sys.executable).parent / "securevfl"  # the console script of this environment
        command = [str(beside) if beside.exists() else "securevfl", "train", "--config", str(ROOT / "examples" / config),
                   "--out", str(folder), "--overwrite"]
        for item in overrides:
            command += ["--set", item]
        print("running", name, "seed", seed, flush=True)
        subprocess.run(command, check=True)
    return json.loads((folder / "result.json").read_text())


def back_to_back(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Seconds per training step of every variant, measured in interleaved rounds under the same load."""
    from securevfl.config import load_config
    from securevfl.training import run_training

    measured: dict[str, dict[str, Any]] = {name: {"rounds": [], "decrypt": []} for name in VARIANTS}
    for _ in range(args.timing_rounds):
        for name, (config, extra) in VARIANTS.items():
            overrides = [f"data.dir={args.data}", "data.train_limit=640", "data.test_limit=64", "train.epochs=1",
                         "train.progress=false", "train.checkpoint=false", *extra]
            result = run_training(load_config(ROOT / "examples" / config, overrides))
            timing = result["timing"]
            measured[name]["rounds"].append(sum(v for k, v in timing["summary"].items() if k != "keygen") / 10)
            measured[name]["decrypt"].append(timing["summary"].get("decrypt", 0.0) / 10)
    out = {}
    for name, entry in measured.items():
        ordered = sorted(range(len(entry["rounds"])), key=lambda i: entry["rounds"][i])
        middle = ordered[len(ordered) // 2]
        out[name] = {
            "seconds_per_step": entry["rounds"][middle],
            "decrypt_seconds_per_step": entry["decrypt"][middle],
            "rounds": entry["rounds"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", type=Path, default=Path("runs/flooding"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "flooding_accuracy")
    parser.add_argument("--train", type=int, default=6400)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--long-epochs", type=int, default=12, help="one longer pair (plain vs coordinator, seed 0); 0: none")
    parser.add_argument("--timing-rounds", type=int, default=0, help="back-to-back timing rounds of every variant (0: none)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"error: no MNIST data at {args.data}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    plan = [(name, seed, args.epochs) for seed in args.seeds for name in VARIANTS if seed == 0 or "no flooding" not in name]
    if args.long_epochs and args.long_epochs != args.epochs:  # 0 (or the short length): no longer pair
        plan += [("plain", 0, args.long_epochs), ("ckks/coordinator, flooding 30", 0, args.long_epochs)]
    for name, seed, epochs in plan:
        result = run(name, seed, epochs, args)
        steps = -(-args.train // 64) * epochs
        rows.append({
            "variant": name, "seed": seed, "epochs": epochs,
            "accuracy": [h["main_accuracy"] for h in result["history"]],
            "seconds_per_step": sum(result["timing"]["epoch_seconds"]) / steps,
            "decrypt_seconds_per_step": result["timing"].get("decrypt", 0.0) / steps,
        })
    lines = [
        f"MNIST, sum top (392 -> 32 -> 10 bottoms), batch 64, lr 0.01, {args.train} training and {args.test} test samples. "
        "Accuracy after each epoch; the difference is flooded minus plaintext of the same seed (same batches).",
        "",
        "| variant | seed | epochs | accuracy per epoch | last - plaintext (points) | s/step | decrypt s/step |",
        "|---|---|---|---|---|---|---|",
    ]
    plain = {(r["seed"], r["epochs"]): r["accuracy"][-1] for r in rows if r["variant"] == "plain"}
    differences: dict[str, list[float]] = {}
    for r in rows:
        delta = 100 * (r["accuracy"][-1] - plain[(r["seed"], r["epochs"])])
        if r["variant"] != "plain" and r["epochs"] == args.epochs:
            differences.setdefault(r["variant"], []).append(delta)
        accuracy = " / ".join(f"{100 * a:.1f}" for a in r["accuracy"])
        lines.append(f"| {r['variant']} | {r['seed']} | {r['epochs']} | {accuracy} | {delta:+.2f} | "
                     f"{r['seconds_per_step']:.3f} | {r['decrypt_seconds_per_step']:.4f} |")
    lines += ["", f"Mean difference at epoch {args.epochs} over seeds (points): " + "; ".join(
        f"{name}: {statistics.mean(d):+.2f} (n = {len(d)})" for name, d in differences.items())]
    timing = back_to_back(args) if args.timing_rounds > 0 else {}
    if timing:
        lines += ["", f"Back to back (every variant 10 training steps on 640 samples, {args.timing_rounds} interleaved rounds, "
                  "median; the runs above shared the machine with other jobs, these times are the comparable ones):", "",
                  "| variant | s/step | decrypt s/step | s/step of each round |", "|---|---|---|---|"]
        for name, entry in timing.items():
            lines.append(f"| {name} | {entry['seconds_per_step']:.3f} | {entry['decrypt_seconds_per_step']:.4f} | "
                         + " / ".join(f"{v:.3f}" for v in entry["rounds"]) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps({"runs": rows, "back_to_back": timing}, indent=1) + "\n")
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
