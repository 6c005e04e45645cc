"""The attacks-and-defenses sweeps on MNIST: every run of the evidence behind docs/results/attacks_defenses.md.

Each run is ``securevfl train`` on an example config plus ``--set`` overrides; results land in
``OUT/<run name>/result.json``. Finished runs are skipped and interrupted ones resume from their
checkpoint, so the script can be stopped and restarted at will. Runs execute in worker
processes (SEAL holds the GIL)::

    python examples/attack_defense_sweeps.py --group plain --workers 2
    python examples/attack_defense_sweeps.py --group receiver --workers 2
    python examples/attack_defense_sweeps.py --group blind --workers 2
    python examples/attack_defense_sweeps.py --summarize docs/results/attacks_defenses.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
SUM = EXAMPLES / "mnist_plain_sum.toml"
TRAINABLE = EXAMPLES / "mnist_plain_trainable.toml"

#: Full-MNIST sweeps (plain and key_holder = receiver): epochs per run.
EPOCHS = 20
#: The reduced setting of the label-private schemes: samples, epochs, poisoned samples.
BLIND = ["data.train_limit=6000", "data.test_limit=2000", "train.epochs=3", "attack.poison_train=60"]

BACKDOOR = ["attack.kind=gradient_replacement"]
BLUR = [*BACKDOOR, "attack.gamma=10", "attack.blur_activations=true"]
NOISE_VARIANCES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
DROP_RATES = (0.5, 0.9, 0.99, 0.999)


def _defense(table: str) -> str:
    return f"defense=[{{{table}}}]"


def full_mnist_runs(scheme: list[str]) -> dict[str, tuple[Path, list[str]]]:
    """The sweeps of the issue on full MNIST, for one scheme."""
    base = [f"train.epochs={EPOCHS}", *scheme]
    runs: dict[str, tuple[Path, list[str]]] = {"sum_clean": (SUM, base)}
    for gamma in (1, 3, 10, 30):
        runs[f"sum_gamma{gamma}"] = (SUM, [*base, *BACKDOOR, f"attack.gamma={gamma}"])
    for gamma in (1, 3, 10, 30):
        runs[f"sum_first_gamma{gamma}"] = (SUM, [*base, *BACKDOOR, f"attack.gamma={gamma}", "attack.record=first"])
    runs["sum_label_inference"] = (SUM, [*base, "attack.kind=label_inference"])
    runs["trainable_clean"] = (TRAINABLE, base)
    runs["trainable_gamma10"] = (TRAINABLE, [*base, *BACKDOOR, "attack.gamma=10"])
    runs["trainable_blur"] = (TRAINABLE, [*base, *BLUR])
    for variance in NOISE_VARIANCES:
        runs[f"trainable_blur_gauss{variance:g}"] = (
            TRAINABLE, [*base, *BLUR, _defense(f'kind="gaussian_noise", variance={variance}')])
    for rate in DROP_RATES:
        runs[f"trainable_blur_drop{rate:g}"] = (
            TRAINABLE, [*base, *BLUR, _defense(f'kind="sparsification", drop_rate={rate}')])
    return runs


def blind_runs() -> dict[str, tuple[Path, list[str]]]:
    """The reduced setting for every scheme: undefended attack, one defense per placement, label inference."""
    runs: dict[str, tuple[Path, list[str]]] = {}
    schemes = {
        "plain": ["protection.scheme=plain"],
        "receiver": ["protection.scheme=ckks", "protection.key_holder=receiver"],
        "active": ["protection.scheme=ckks", "protection.key_holder=active"],
        "coordinator": ["protection.scheme=ckks", "protection.key_holder=coordinator"],
    }
    for name, scheme in schemes.items():
        base = [*BLIND, *scheme]
        runs[f"reduced_{name}_clean"] = (SUM, base)
        runs[f"reduced_{name}_gamma10"] = (SUM, [*base, *BACKDOOR, "attack.gamma=10"])
        runs[f"reduced_{name}_gamma10_gauss_pre"] = (
            SUM, [*base, *BACKDOOR, "attack.gamma=10", _defense('kind="gaussian_noise", variance=1e-4')])
        if name != "plain":
            runs[f"reduced_{name}_gamma10_gauss_under"] = (
                SUM, [*base, *BACKDOOR, "attack.gamma=10",
                      _defense('kind="gaussian_noise", variance=1e-4, placement="under_encryption"')])
        runs[f"reduced_{name}_label_inference"] = (SUM, [*base, "attack.kind=label_inference", "train.epochs=1"])
    return runs


GROUPS = {
    "plain": lambda: full_mnist_runs(["protection.scheme=plain"]),
    "receiver": lambda: full_mnist_runs(["protection.scheme=ckks", "protection.key_holder=receiver"]),
    "blind": blind_runs,
}


def _run(job: tuple[str, Path, list[str], Path, str]) -> tuple[str, str, float]:
    name, config_path, overrides, out_root, data_dir = job
    from securevfl.config import load_config
    from securevfl.training import run_training

    out = out_root / name
    if (out / "result.json").is_file():
        return name, "done earlier", 0.0
    started = time.perf_counter()
    resume = (out / "checkpoint.pt").is_file()
    try:
        config = load_config(config_path, [*overrides, f"data.dir={data_dir}", "train.progress=false"])
        result = run_training(config, out, resume=resume)
    except Exception as exc:  # record and go on with the other runs
        return name, f"failed: {exc}", time.perf_counter() - started
    metrics = {k: result.get(k) for k in ("main_accuracy", "backdoor_accuracy", "label_inference_accuracy")}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)
    return name, shown or "ok", time.perf_counter() - started


def summarize(out_root: Path, target: Path) -> None:
    """Collect every finished run's headline numbers and history into one JSON file."""
    rows = {}
    for result_path in sorted(out_root.glob("*/result.json")):
        result = json.loads(result_path.read_text())
        rows[result_path.parent.name] = {
            key: result.get(key)
            for key in ("scheme", "key_holder", "main_accuracy", "backdoor_accuracy", "label_inference_accuracy",
                        "attack_feasible", "attack_infeasible_reason", "defenses")
        } | {
            "history": result["history"],
            "mean_epoch_seconds": result["timing"]["mean_epoch_seconds"],
            "overrides_config": {k: result["config"][k] for k in ("model", "train", "protection", "attack")},
        }
    target.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} runs -> {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", choices=sorted(GROUPS), action="append", default=[])
    parser.add_argument("--only", action="append", default=[], help="run names to run (default: the whole group)")
    parser.add_argument("--out", type=Path, default=Path("runs/attack_defense"))
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summarize", type=Path, help="write the collected results to this JSON file and stop")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize(args.out, args.summarize)
        return 0
    jobs = []
    for group in args.group:
        for name, (config, overrides) in GROUPS[group]().items():
            if not args.only or name in args.only:
                jobs.append((f"{group}_{name}" if group != "blind" else name, config, overrides, args.out, args.data_dir))
    print(f"{len(jobs)} runs, {args.workers} workers -> {args.out}", flush=True)
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for done, (name, status, seconds) in enumerate(pool.imap_unordered(_run, jobs), start=1):
            print(f"[{done}/{len(jobs)}] {name}: {status} ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
