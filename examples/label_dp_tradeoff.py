"""Label-DP noise on the gradient rows: label recovery by gradient inversion vs main accuracy vs time.

A curious passive inverts its batch-summed parameter gradients into per-sample gradient rows and
reads the labels off them (``attack.kind = "gradient_inversion"``; 100 % of MNIST labels at batch
64 without a defense). The ``label_dp`` defense adds Gaussian noise of standard deviation
``z * sqrt(2) / B_t`` to those rows at the active party, before encryption, and the run reports
the (epsilon, delta) of that noise (``docs/defenses.md``, "Label-DP"). This sweep trains one run
per noise multiplier ``z`` (``0`` = no defense) with the attack on, and plots, per run, the main
accuracy against the attack's label accuracy, each point annotated with ``z`` and epsilon.

The sweep runs under the plain scheme: the passive's view of ``dW`` there is exactly what the
label-private CKKS schemes reveal to it, apart from CKKS's own approximation error. A few points
are repeated under ``protection.scheme = "ckks"``, ``key_holder = "active"``, with the key
holder's flooding off (``flooding_bits = 0``, so that the only noise is the defense's), to check
that the plain numbers transfer.

Setting (reduced so that the whole sweep fits about 40 minutes on two busy cores): MNIST paper
model (``examples/mnist_plain_sum.toml``: two passives with half images, bottoms 392 -> 32 -> 10,
sum top), batch 64, seed 0, ``--samples`` training and ``--test-samples`` test samples,
``--epochs`` epochs, learning rate ``--lr`` (raised from the paper's 0.01, whose model is still
near its initialisation after so few steps). The noise comes from the OS CSPRNG (the defense's
default, which is what makes the epsilon claimable), so a rerun reproduces the numbers
statistically, not bit for bit.

Results: ``--out-dir``/results.json (one entry per point, written atomically after each point;
points already there are skipped, so an interrupted sweep resumes), results.md and tradeoff.png.

    python examples/label_dp_tradeoff.py --data /work/shared/data/mnist

``--compare`` puts both label options of docs/protection.md side by side in one setting, every
point under CKKS with the default key holder (flooding on): label-DP at several ``z`` and the
sealed source layer (``protection.passive_layer = "sealed"``), with the undefended run and the
plaintext run as references. The sealed layer needs a bottom of one Linear layer, so this mode
trains that model (392 -> 10 bottoms, ``--model linear``) for every point. The plot then has a
second panel: main accuracy against protocol seconds per step.

    python examples/label_dp_tradeoff.py --data /work/shared/data/mnist --compare
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend

from securevfl.config import validate_config  # noqa: E402
from securevfl.data import VFLDataset, load_dataset  # noqa: E402
from securevfl.data.config import DataConfig  # noqa: E402
from securevfl.defenses.label_dp import DEFAULT_DELTA  # noqa: E402
from securevfl.files import atomic_write, atomic_write_text  # noqa: E402
from securevfl.training import run_training  # noqa: E402

NOISE_MULTIPLIERS = (0.0, 0.03, 0.1, 0.3, 0.5, 1.0, 2.0, 3.0, 10.0)
CKKS_NOISE_MULTIPLIERS = (0.0, 0.3, 1.0)
COMPARE_NOISE_MULTIPLIERS = (0.0, 0.3, 1.0, 3.0)
_ACTIVE = {"scheme": "ckks", "key_holder": "active", "preset": "compute"}
SCHEMES: dict[str, dict[str, Any]] = {
    "plain": {"scheme": "plain"},
    "ckks/active": {**_ACTIVE, "flooding_bits": 0},
    "ckks/active, flooding": _ACTIVE,  # the default key holder
    "ckks/active, sealed": {**_ACTIVE, "passive_layer": "sealed"},
}
MARKERS = {"plain": "o", "ckks/active": "s", "ckks/active, flooding": "D", "ckks/active, sealed": "*"}
LEGEND = {
    "plain": "plain",
    "ckks/active": "ckks/active (flooding off), label-DP z only",
    "ckks/active, flooding": "ckks/active, default key holder (flooding on) + label-DP z",
    "ckks/active, sealed": "ckks/active, sealed source layer",
}
MODELS = {
    "paper": {"top": "sum", "bottom_hidden": [32]},  # examples/mnist_plain_sum.toml
    "linear": {"top": "sum", "bottom_hidden": []},  # the one-Linear bottom a sealed layer needs
}
CHANCE = 0.1


@dataclass(frozen=True)
class Point:
    """One run of the sweep: a scheme and a noise multiplier (0: no defense)."""

    scheme: str
    z: float

    @property
    def key(self) -> str:
        return f"{self.scheme}|z={self.z:g}"


def run_point(point: Point, dataset: VFLDataset, args: argparse.Namespace) -> dict[str, Any]:
    """Train one run with the inversion attack (and the defense when ``z > 0``); return what the plot needs."""
    raw: dict[str, Any] = {
        "parties": {"passive": 2, "split": "rows"},
        "model": MODELS[args.model],
        "train": {"epochs": args.epochs, "batch_size": args.batch, "lr": args.lr, "seed": args.seed, "progress": False, "checkpoint": False},
        "protection": SCHEMES[point.scheme],
        "attack": {"kind": "gradient_inversion"},
    }
    if point.z > 0:
        raw["defense"] = [{"kind": "label_dp", "noise_multiplier": point.z}]
    started = time.perf_counter()
    result = run_training(validate_config(raw), dataset=dataset)
    wall = time.perf_counter() - started
    steps = args.epochs * -(-len(dataset.y_train) // args.batch)
    privacy = result["privacy"]
    return {
        "scheme": point.scheme,
        "z": point.z,
        "main_accuracy": result["main_accuracy"],
        # None when the attack had nothing to work on (the sealed layer): see attack_infeasible_reason
        "inversion_label_accuracy": result.get("inversion_label_accuracy"),
        "inversion_best_label_accuracy": result.get("inversion_best_label_accuracy"),
        "inversion_rows_recovered": result.get("inversion_rows_recovered"),
        "attack_infeasible_reason": result.get("attack_infeasible_reason"),
        "history": result["history"],
        "epsilon_pld": None if privacy is None else privacy["epsilon_pld"],
        "epsilon_rdp": None if privacy is None else privacy["epsilon_rdp"],
        "delta": None if privacy is None else privacy["delta"],
        "claimed": None if privacy is None else privacy["claimed"],
        "steps": steps,
        # the federation's own phases (training and evaluation rounds), not the attack's solver
        "protocol_seconds_per_step": round(sum(result["timing"]["summary"].values()) / steps, 4),
        # everything, the attack's least squares included
        "wall_seconds_per_step": round(wall / steps, 4),
    }


def time_points(points: list[Point], data_dir: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Protocol seconds per step of every point, measured back to back in ``args.timing_rounds`` interleaved rounds.

    The sweep's own runs share the machine with whatever else runs over their hours, so their
    times are not comparable with each other. Here every point trains ``args.timing_steps`` steps
    without the attack (64 test samples), round-robin, and keeps the median: points measured
    under the same load. Stored as ``timed_seconds_per_step`` (with the load average seen).
    """
    samples = args.timing_steps * args.batch
    dataset = load_dataset(DataConfig(name="mnist", dir=str(data_dir), train_limit=samples, test_limit=64))
    seen: dict[str, list[float]] = {point.key: [] for point in points}
    loads = []
    for _ in range(args.timing_rounds):
        for point in points:
            raw: dict[str, Any] = {
                "parties": {"passive": 2, "split": "rows"},
                "model": MODELS[args.model],
                "train": {"epochs": 1, "batch_size": args.batch, "lr": args.lr, "seed": args.seed, "progress": False, "checkpoint": False},
                "protection": SCHEMES[point.scheme],
            }
            if point.z > 0:
                raw["defense"] = [{"kind": "label_dp", "noise_multiplier": point.z}]
            result = run_training(validate_config(raw), dataset=dataset)
            seen[point.key].append(sum(result["timing"]["summary"].values()) / args.timing_steps)
            loads.append(os.getloadavg()[0])
    for key, values in seen.items():
        ordered = sorted(values)
        results["points"][key]["timed_seconds_per_step"] = round(ordered[len(ordered) // 2], 4)
        results["points"][key]["timed_runs"] = [round(v, 4) for v in values]
    results["meta"]["timing"] = {
        "rounds": args.timing_rounds, "steps": args.timing_steps, "load_average_1min": [round(x, 2) for x in loads],
    }


def seconds(point: dict[str, Any]) -> float:
    """The point's protocol seconds per step: the back-to-back measurement when there is one."""
    return point.get("timed_seconds_per_step", point["protocol_seconds_per_step"])


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"points": {}}


def save(path: Path, results: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _epsilon(point: dict[str, Any]) -> str:
    if point["z"] == 0:
        return "∞ (no noise)"
    if not point["claimed"]:
        return "not claimed"
    return f"{point['epsilon_pld']:.3g} (RDP {point['epsilon_rdp']:.3g})"


MODEL_TEXT = {
    "paper": "MNIST paper model (two passives with half images, bottoms 392 -> 32 -> 10, sum top)",
    "linear": "MNIST, two passives with half images, one-Linear bottoms 392 -> 10 (what a sealed layer allows), sum top",
}


def _labels(point: dict[str, Any], key: str = "inversion_label_accuracy") -> str:
    if point.get(key) is None and point.get("attack_infeasible_reason"):
        return "infeasible"
    return _percent(point.get(key))


def markdown(results: dict[str, Any]) -> str:
    """results.md: the setting, the table of points, and the plain-vs-CKKS comparison (from the numbers)."""
    meta = results["meta"]
    compare = meta.get("compare", False)
    title = "Both label options in one setting" if compare else "Label-DP noise on the gradient rows"
    lines = [
        f"# {title}: inversion vs accuracy vs time",
        "",
        "Generated by `examples/label_dp_tradeoff.py` from `results.json`; do not edit by hand.",
        "",
        f"{MODEL_TEXT[meta.get('model', 'paper')]}, "
        f"{meta['samples']} training samples, {meta['test_samples']} test samples, {meta['epochs']} epochs, "
        f"batch {meta['batch']}, lr {meta['lr']}, seed {meta['seed']}. Attack: `gradient_inversion` at `passive_2` "
        "(its own pick of labels: argmin of the inverted rows; chance 10 %). Defense: `label_dp` with noise "
        "multiplier z (per-entry sigma = z sqrt(2)/B_t on the rows dL/dH, pre-encryption, one draw per step for both "
        f"passives, CSPRNG noise); epsilon at delta = {meta['delta']:g} after {meta['epochs']} releases per label "
        "(one per epoch, no amplification), PLD accountant (RDP in parentheses), dp-accounting. `labels`, `best`, "
        "`rows`: the attack's label accuracy, its best scorer in hindsight, and rows recovered within 1e-3, at the last "
        "epoch (`infeasible`: the attacker holds no parameter gradient to invert). `protocol s/step`: the federation's "
        "own phases per training step (training and evaluation rounds); `wall s/step`: everything, the attack's least "
        "squares included. Two busy shared cores: read times as ratios. `timed s/step`: the same protocol time, every "
        "point measured back to back in interleaved rounds without the attack (median; see `meta.timing`), the only "
        "times comparable across points; the plots use it when present.",
        "",
        "| scheme | z | epsilon (delta 1e-5) | main acc | labels | best | rows | protocol s/step | wall s/step | timed s/step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(results["points"].values(), key=lambda p: (p["scheme"] != "plain", p["scheme"], p["z"]))
    for p in ordered:
        lines.append(
            f"| {p['scheme']} | {p['z']:g} | {_epsilon(p)} | {_percent(p['main_accuracy'])} | "
            f"{_labels(p)} | {_labels(p, 'inversion_best_label_accuracy')} | "
            f"{_labels(p, 'inversion_rows_recovered')} | {p['protocol_seconds_per_step']} | {p['wall_seconds_per_step']} | "
            f"{p.get('timed_seconds_per_step', '—')} |"
        )
    if compare:
        lines += ["", "## Reading", "", *comparison(results), ""]
    else:
        lines += ["", "## Does the plain scheme stand for the label-private one?", "", *transfer(results), ""]
    lines += ["## Per epoch", "", "| scheme | z | epoch | main acc | labels |", "|---|---|---|---|---|"]
    for p in ordered:
        for h in p["history"]:
            lines.append(f"| {p['scheme']} | {p['z']:g} | {h['epoch']} | {_percent(h['main_accuracy'])} | {_labels({**h, 'attack_infeasible_reason': p.get('attack_infeasible_reason')})} |")
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def comparison(results: dict[str, Any]) -> list[str]:
    """Each CKKS point against the undefended default run: labels, accuracy and time, from the numbers."""
    points = results["points"]
    base = points.get(Point("ckks/active, flooding", 0.0).key)
    plain = points.get(Point("plain", 0.0).key)
    if base is None:
        return ["- The undefended default run is missing."]
    out = []
    if plain is not None:
        out.append(
            f"- Undefended default key holder: labels {_labels(base)}, main accuracy {_percent(base['main_accuracy'])} "
            f"(plaintext {_percent(plain['main_accuracy'])}), {seconds(base)} s/step."
        )
    for p in sorted(points.values(), key=lambda p: (p["scheme"], p["z"])):
        if p is base or p["scheme"] == "plain":
            continue
        what = f"sealed source layer" if p["scheme"].endswith("sealed") else f"label-DP z = {p['z']:g} ({_epsilon(p)})"
        out.append(
            f"- {what}: labels {_labels(p)}, main accuracy {_percent(p['main_accuracy'])} "
            f"({100 * (p['main_accuracy'] - base['main_accuracy']):+.1f} points), "
            f"{seconds(p) / seconds(base):.1f}x the protocol time per step."
        )
    return out


def transfer(results: dict[str, Any]) -> list[str]:
    """One line per noise multiplier run under both schemes: the label accuracy difference."""
    points = results["points"]
    out = []
    for key, ckks in sorted(points.items()):
        if ckks["scheme"] != "ckks/active":
            continue
        plain = points.get(Point("plain", ckks["z"]).key)
        if plain is None:
            continue
        gap = ckks["inversion_label_accuracy"] - plain["inversion_label_accuracy"]
        out.append(
            f"- z = {ckks['z']:g}: labels {_percent(plain['inversion_label_accuracy'])} plain, "
            f"{_percent(ckks['inversion_label_accuracy'])} {ckks['scheme']} ({100 * gap:+.1f} points); main accuracy "
            f"{_percent(plain['main_accuracy'])} / {_percent(ckks['main_accuracy'])}; protocol s/step "
            f"{plain['protocol_seconds_per_step']} / {ckks['protocol_seconds_per_step']}."
        )
    return out or ["- No noise multiplier was run under both schemes."]


def _shown_labels(point: dict[str, Any]) -> float:
    """Where a point sits on the label axis: an infeasible attack learns nothing, drawn at chance."""
    value = point.get("inversion_label_accuracy")
    return CHANCE if value is None else value


def plot(results: dict[str, Any], path: Path) -> None:
    """tradeoff.png: main accuracy (x) vs inversion label accuracy (y), coloured by protocol seconds per step.

    Plain points carry ``z`` and epsilon; labels that would overlap are moved down and joined to
    their point by a thin line, so clustered points (the weak-noise end) stay readable. In
    ``--compare`` mode a second panel shows main accuracy against protocol seconds per step.
    """
    points = list(results["points"].values())
    meta = results["meta"]
    compare = meta.get("compare", False)
    fig, axes = plt.subplots(1, 2 if compare else 1, figsize=(14, 6) if compare else (8.5, 6), squeeze=False)
    ax = axes[0][0]
    times = [seconds(p) for p in points]
    norm = matplotlib.colors.LogNorm(vmin=min(times), vmax=max(max(times), min(times) * 1.01))
    xs_all = [p["main_accuracy"] for p in points]
    left, right = min(xs_all) - 0.08, max(xs_all) + 0.08
    middle = (left + right) / 2
    placed: list[tuple[float, float]] = []
    scatter = None
    for scheme, marker in MARKERS.items():
        chosen = sorted((p for p in points if p["scheme"] == scheme), key=lambda p: p["z"])
        if not chosen:
            continue
        xs = [p["main_accuracy"] for p in chosen]
        ys = [_shown_labels(p) for p in chosen]
        annotated = scheme == "plain" if not compare else scheme == "ckks/active, flooding"
        if annotated:
            ax.plot(xs, ys, color="0.75", zorder=1, linewidth=1)
        scatter = ax.scatter(
            xs, ys, c=[seconds(p) for p in chosen], cmap="viridis", norm=norm, marker=marker,
            s=60 if annotated else 150 if marker != "*" else 300, edgecolors="black", zorder=3 if annotated else 2,
            label=LEGEND[scheme],
        )
        for p in chosen:
            x, y = p["main_accuracy"], _shown_labels(p)
            if annotated:
                eps = "ε=∞" if p["z"] == 0 else (f"ε={p['epsilon_pld']:.3g}" if p["claimed"] else "ε n/a")
                text = f"z={p['z']:g}, {eps}"
                label_y = y
                while any(abs(label_y - py) < 0.04 and abs(x - px) < 0.2 for px, py in placed):
                    label_y -= 0.045
                placed.append((x, label_y))
                to_right = x < middle
                ax.annotate(
                    text, (x, y), xytext=(x + (0.03 if to_right else -0.03), label_y), textcoords="data", fontsize=8,
                    ha="left" if to_right else "right", va="center",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.6} if label_y != y else None,
                )
            elif p.get("inversion_label_accuracy") is None:
                ax.annotate("sealed: nothing to invert", (x, y), textcoords="offset points", xytext=(0, 14), fontsize=8, ha="center")
            elif scheme != "plain":
                ax.annotate(f"z={p['z']:g}", (x, y), textcoords="offset points", xytext=(9, 5), fontsize=7, color="0.3")
    if scatter is not None:
        fig.colorbar(scatter, ax=ax, label="protocol seconds per training step")
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1)
    ax.text(right, CHANCE, "chance ", va="bottom", ha="right", fontsize=8, color="grey")
    ax.set_xlim(left, right)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("main (clean test) accuracy")
    ax.set_ylabel("labels recovered by gradient inversion (passive_2)")
    what = "label_dp and the sealed layer" if compare else "label_dp on the gradient rows"
    ax.set_title(
        f"{what}, MNIST sum top, batch {meta['batch']}, {meta['samples']} samples x {meta['epochs']} epochs\n"
        f"ε at δ={meta['delta']:g} (PLD) after {meta['epochs']} releases per label, no amplification",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8)
    if compare:
        cost = axes[0][1]
        for scheme, marker in MARKERS.items():
            chosen = [p for p in points if p["scheme"] == scheme]
            if not chosen:
                continue
            cost.scatter(
                [seconds(p) for p in chosen], [p["main_accuracy"] for p in chosen], marker=marker,
                s=150 if marker == "*" else 60, edgecolors="black", label=LEGEND[scheme],
            )
            for p in chosen:
                tag = "sealed" if scheme.endswith("sealed") else f"z={p['z']:g}"
                cost.annotate(tag, (seconds(p), p["main_accuracy"]), textcoords="offset points", xytext=(7, 4), fontsize=7)
        cost.set_xscale("log")
        cost.set_xlabel("protocol seconds per training step (log)")
        cost.set_ylabel("main (clean test) accuracy")
        cost.set_title("what each option costs", fontsize=10)
        cost.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/mnist"), help="MNIST IDX .gz directory")
    parser.add_argument("--out-dir", type=Path, default=None, help="default docs/results/label_dp_tradeoff (--compare: label_protection_tradeoff)")
    parser.add_argument("--model", choices=sorted(MODELS), default=None, help="default paper (--compare: linear)")
    parser.add_argument("--compare", action="store_true", help="both label options under the default key holder (see above)")
    parser.add_argument("--timing-rounds", type=int, default=0, help="interleaved back-to-back timing rounds (0: none)")
    parser.add_argument("--timing-steps", type=int, default=10, help="training steps per timing run")
    parser.add_argument("--samples", type=int, default=4096, help="training samples per run")
    parser.add_argument("--test-samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--z", type=float, nargs="+", default=list(NOISE_MULTIPLIERS), help="noise multipliers, plain scheme (0: none)")
    parser.add_argument("--ckks-z", type=float, nargs="*", default=list(CKKS_NOISE_MULTIPLIERS), help="noise multipliers repeated under ckks/active")
    args = parser.parse_args(argv)
    args.model = args.model or ("linear" if args.compare else "paper")
    args.out_dir = args.out_dir or Path("docs/results") / ("label_protection_tradeoff" if args.compare else "label_dp_tradeoff")
    if not (args.data / "train-images-idx3-ubyte.gz").exists():
        print(f"skipped: no MNIST at {args.data} (expects train-images-idx3-ubyte.gz and the other IDX files)")
        return 0
    dataset = load_dataset(DataConfig(name="mnist", dir=str(args.data), train_limit=args.samples, test_limit=args.test_samples))
    out = args.out_dir / "results.json"
    results = load(out)
    meta = {
        "samples": args.samples, "test_samples": args.test_samples, "epochs": args.epochs, "batch": args.batch,
        "lr": args.lr, "seed": args.seed, "delta": DEFAULT_DELTA, "model": args.model, "compare": args.compare,
        "command": "python examples/label_dp_tradeoff.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    old = results.get("meta")
    defaults = {"model": "paper", "compare": False}  # sweeps written before these options existed
    if old is not None and any(old.get(k, defaults.get(k)) != v for k, v in meta.items() if k != "command"):
        parser.error(f"{out} holds a sweep with another setting ({old}); use another --out-dir")
    results["meta"] = meta
    if args.compare:
        points = [Point("plain", 0.0), Point("ckks/active, sealed", 0.0)]
        points += [Point("ckks/active, flooding", z) for z in COMPARE_NOISE_MULTIPLIERS]
    else:
        points = [Point("plain", z) for z in args.z] + [Point("ckks/active", z) for z in args.ckks_z]
    for point in points:
        if point.key in results["points"]:
            continue
        results["points"][point.key] = run_point(point, dataset, args)
        save(out, results)
        found = results["points"][point.key]
        print(point.key, {k: found[k] for k in ("main_accuracy", "inversion_label_accuracy", "epsilon_pld", "protocol_seconds_per_step")}, flush=True)
    if args.timing_rounds > 0:
        time_points(points, args.data, args, results)
    save(out, results)
    atomic_write_text(args.out_dir / "results.md", markdown(results))
    plot(results, args.out_dir / "tradeoff.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
