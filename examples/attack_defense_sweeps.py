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


def full_mnist_runs(scheme: list[str], extras: bool = True) -> dict[str, tuple[Path, list[str]]]:
    """The sweeps on full MNIST for one scheme; ``extras`` adds the variants beyond the issue's grid."""
    base = [f"train.epochs={EPOCHS}", *scheme]
    runs: dict[str, tuple[Path, list[str]]] = {"sum_clean": (SUM, base)}
    for gamma in (1, 3, 10, 30):
        runs[f"sum_gamma{gamma}"] = (SUM, [*base, *BACKDOOR, f"attack.gamma={gamma}"])
    for gamma in (1, 3, 10, 30) if extras else ():
        runs[f"sum_first_gamma{gamma}"] = (SUM, [*base, *BACKDOOR, f"attack.gamma={gamma}", "attack.record=first"])
    runs["sum_label_inference"] = (SUM, [*base, "attack.kind=label_inference"])
    runs["trainable_clean"] = (TRAINABLE, base)
    if extras:
        runs["trainable_gamma10"] = (TRAINABLE, [*base, *BACKDOOR, "attack.gamma=10"])
    runs["trainable_blur"] = (TRAINABLE, [*base, *BLUR])
    for variance in NOISE_VARIANCES if extras else NOISE_VARIANCES[2:]:
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
        if name in ("plain", "receiver"):
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
    # the CKKS runs cost ~7x the plaintext ones: the grid only
    "receiver": lambda: full_mnist_runs(["protection.scheme=ckks", "protection.key_holder=receiver"], extras=False),
    "blind": blind_runs,
}


def _run(job: tuple[str, Path, list[str], Path, str]) -> tuple[str, str, float]:
    name, config_path, overrides, out_root, data_dir = job
    from securevfl.config import load_config
    from securevfl.training import run_training

    out = out_root / name
    if (out / "result.json").is_file() or (out / "failed.json").is_file():
        return name, "done earlier", 0.0
    started = time.perf_counter()
    resume = (out / "checkpoint.pt").is_file()
    try:
        config = load_config(config_path, [*overrides, f"data.dir={data_dir}", "train.progress=false"])
        result = run_training(config, out, resume=resume)
    except Exception as exc:  # record and go on with the other runs
        out.mkdir(parents=True, exist_ok=True)
        (out / "failed.json").write_text(json.dumps({"error": str(exc)}) + "\n", encoding="utf-8")
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
    for failed_path in sorted(out_root.glob("*/failed.json")):
        rows[failed_path.parent.name] = {"failed": json.loads(failed_path.read_text())["error"]}
    target.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} runs -> {target}")


def _cell(row: dict | None, key: str) -> str:
    if row is None:
        return "not run"
    if "failed" in row:
        return "diverged" if "diverged" in row["failed"] else "failed"
    if key == "backdoor_accuracy" and row.get("attack_feasible") is False:
        return "infeasible"
    value = row.get(key)
    return "-" if value is None else f"{100 * value:.2f}"


def _peak(row: dict | None) -> str:
    if row is None or "failed" in row or not row["history"] or "backdoor_accuracy" not in row["history"][0]:
        return "-"
    best = max(row["history"], key=lambda h: h["backdoor_accuracy"])
    return f"{100 * best['backdoor_accuracy']:.0f} (ep {best['epoch']})"


def report(summary: Path, target: Path) -> None:
    """Markdown tables of the sweeps from a summary JSON (last-epoch values; peak backdoor beside them)."""
    rows = json.loads(summary.read_text())
    schemes = ("plain", "receiver")
    lines = [
        "# Attacks and defenses on MNIST: the sweeps",
        "",
        f"Generated by `python examples/attack_defense_sweeps.py --report {target}` from `{summary}`.",
        f"Full MNIST, paper settings (2 passives, top/bottom 14 rows, batch 64, SGD lr 0.01, seed 0), {EPOCHS} epochs per run;",
        "the attacker is passive_2 (bottom rows, which hold the trigger), target label 0, 600 poisoned training and",
        "100 triggered test samples, 1 known target sample. Values are percentages at the last epoch; *peak* is the",
        "highest backdoor accuracy over the epochs. `receiver` = CKKS with key_holder = receiver, preset transport.",
        "",
    ]

    def table(title: str, names: list[tuple[str, str]], note: str = "") -> None:
        lines.extend([f"## {title}", ""])
        if note:
            lines.extend([note, ""])
        header = "| setting | " + " | ".join(f"{s} main | {s} backdoor | {s} peak" for s in schemes) + " |"
        lines.extend([header, "|---" * (1 + 3 * len(schemes)) + "|"])
        for label, name in names:
            cells = []
            for scheme in schemes:
                row = rows.get(f"{scheme}_{name}")
                cells += [_cell(row, "main_accuracy"), _cell(row, "backdoor_accuracy"), _peak(row)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")

    gammas = [("clean (no attack)", "sum_clean")]
    gammas += [(f"gamma = {g}, latest row", f"sum_gamma{g}") for g in (1, 3, 10, 30)]
    gammas += [(f"gamma = {g}, first row", f"sum_first_gamma{g}") for g in (1, 3, 10, 30)]
    table("Non-trainable top: gradient replacement vs gamma", gammas)
    table(
        "Trainable top: the top as a defense, and activation blurring",
        [("clean", "trainable_clean"), ("gamma = 10", "trainable_gamma10"), ("gamma = 10 + blurring", "trainable_blur")],
    )
    table(
        "Trainable top + blurring (gamma 10): Gaussian noise on the gradients (pre_encryption), by variance",
        [(f"variance {v:g}", f"trainable_blur_gauss{v:g}") for v in NOISE_VARIANCES],
    )
    table(
        "Trainable top + blurring (gamma 10): DGC sparsification of the gradients (pre_encryption), by drop rate",
        [(f"drop rate {r:g}", f"trainable_blur_drop{r:g}") for r in DROP_RATES],
    )
    lines.extend(["## Label inference from gradient signs (non-trainable top)", "", "| scheme | label inference accuracy | main |", "|---|---|---|"])
    for scheme in schemes:
        row = rows.get(f"{scheme}_sum_label_inference")
        lines.append(f"| {scheme} (full MNIST, last epoch) | {_cell(row, 'label_inference_accuracy')} | {_cell(row, 'main_accuracy')} |")
    for scheme in ("plain", "receiver", "active", "coordinator"):
        row = rows.get(f"reduced_{scheme}_label_inference")
        status = _cell(row, "label_inference_accuracy") if row is None or row.get("attack_feasible") else f"infeasible: {row['attack_infeasible_reason']}"
        lines.append(f"| {scheme} (reduced, 1 epoch) | {status} | {_cell(row, 'main_accuracy')} |")
    lines.extend([
        "",
        "## Every scheme on a reduced setting",
        "",
        f"MNIST subset: {', '.join(BLIND)} (non-trainable top, gamma 10, latest row). Backdoor accuracy per epoch;",
        "noise: Gaussian, variance 1e-4, on the gradients. post_decryption is refused for gradients in every scheme",
        "(the receiver is the attacker), so the third placement is shown as its refusal.",
        "",
        "| scheme | run | main (last) | backdoor per epoch | s/epoch |",
        "|---|---|---|---|---|",
    ])
    for scheme in ("plain", "receiver", "active", "coordinator"):
        for label, suffix in (("clean", "clean"), ("attack", "gamma10"), ("attack + noise pre_encryption", "gamma10_gauss_pre"), ("attack + noise under_encryption", "gamma10_gauss_under")):
            row = rows.get(f"reduced_{scheme}_{suffix}")
            if row is None:
                if scheme == "plain" and suffix.endswith("under"):
                    lines.append(f"| {scheme} | {label} | refused: the plain scheme has no ciphertexts | | |")
                continue
            per_epoch = " / ".join(f"{100 * h['backdoor_accuracy']:.0f}" for h in row["history"] if "backdoor_accuracy" in h) or "-"
            lines.append(f"| {scheme} | {label} | {_cell(row, 'main_accuracy')} | {per_epoch} | {row['mean_epoch_seconds']:.1f} |")
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"report -> {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", choices=sorted(GROUPS), action="append", default=[])
    parser.add_argument("--only", action="append", default=[], help="run names to run (default: the whole group)")
    parser.add_argument("--out", type=Path, default=Path("runs/attack_defense"))
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summarize", type=Path, help="write the collected results to this JSON file and stop")
    parser.add_argument("--report", type=Path, help="write Markdown tables from --summary (a --summarize output) and stop")
    parser.add_argument("--summary", type=Path, default=Path("docs/results/attacks_defenses.json"))
    args = parser.parse_args(argv)
    if args.summarize:
        summarize(args.out, args.summarize)
        return 0
    if args.report:
        report(args.summary, args.report)
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
