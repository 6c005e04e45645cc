"""Turn raw measurements into the benchmark's rows, ratios and targets; write JSON, table, plot.

Every number scaled beyond what was run is scaled here, by the epoch geometry
(:class:`~securevfl.bench.workload.EpochShape`), and every row states its ``basis``: either
"measured: full epoch" or "extrapolated from ..." naming exactly what was timed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securevfl.bench.paillier import OPERATIONS
from securevfl.bench.workload import EpochShape
from securevfl.protocols.phases import PHASE_GROUPS, cost_summary
from securevfl.schemes import PlainScheme

__all__ = [
    "PAILLIER_KEY",
    "TARGETS",
    "add_ratios",
    "derive_scheme",
    "evaluate_targets",
    "paillier_row",
    "render_markdown",
    "write_outputs",
]


PAILLIER_KEY = "paillier/receiver/2048"
#: The issue's targets: receiver-scheme epoch at most 3x plaintext; CKKS at least 5000x faster
#: than Paillier at encrypting the same message.
TARGETS = {"receiver_transport_epoch_ratio_max": 3.0, "ckks_vs_paillier_encrypt_min": 5000.0}
CATEGORIES = ("compute", "encrypted_compute", "encode_encrypt", "serialize", "deserialize", "decrypt", "transfer")
OVERLAP_NOTE = (
    "In the label-private schemes (active, coordinator) encrypted_compute includes the masked refresh "
    "round trips made inside homomorphic backpropagation, whose encrypt/serialize/deserialize/decrypt "
    "are also counted in their own categories: those categories overlap and do not sum to the wall time."
)


def _group_phases(phases: dict[str, float]) -> dict[str, float]:
    """Raw phase seconds rolled up as ``result.json`` does (``PHASE_GROUPS``), plus ``other``.

    ``other`` stays 0 (every phase belongs to a group); it would show a phase recorded by an
    older result file. ``transfer`` is 0: the in-process channel moves bytes for free (see
    bytes_per_step).
    """
    grouped: dict[str, float] = {group: float(seconds) for group, seconds in cost_summary(phases).items()}
    known = {phase for names in PHASE_GROUPS.values() for phase in names}
    grouped["other"] = sum(seconds for phase, seconds in phases.items() if phase not in known)
    return grouped


def _scaled(values: dict[str, float], factor: float, digits: int | None = 6) -> dict[str, float]:
    return {key: (round(v * factor, digits) if digits is not None else v * factor) for key, v in values.items()}


def _combine(a: dict[str, float], b: dict[str, float], digits: int = 6) -> dict[str, float]:
    return {key: round(a.get(key, 0.0) + b.get(key, 0.0), digits) for key in sorted(set(a) | set(b))}


def derive_scheme(measurement: dict[str, Any], shape: EpochShape) -> dict[str, Any]:
    """Per-step and per-epoch figures of one measured scheme.

    epoch seconds = (timed training seconds) x (epoch steps / timed steps)
                  + (evaluation seconds) x (test samples / evaluated samples).
    Both factors are 1 for a full-epoch measurement.
    """
    train, evaluation = measurement["train"], measurement["eval"]
    steps, samples = train["steps"], evaluation["samples"]
    step_factor, eval_factor = shape.steps / steps, shape.n_test / samples
    extrapolated = steps < shape.steps or samples < shape.n_test
    basis = (
        f"extrapolated from {steps} steps (after {measurement['warmup_steps']} warm-up) and {samples} test samples"
        if extrapolated
        else "measured: full epoch"
    )
    train_groups, eval_groups = _group_phases(train["phases"]), _group_phases(evaluation["phases"])
    epoch_train_seconds = train["seconds"] * step_factor
    epoch_eval_seconds = evaluation["seconds"] * eval_factor
    bytes_per_step = {kind: round(n / steps, 1) for kind, n in train["bytes"].items()}
    spec = measurement["spec"]
    return {
        "scheme": spec["scheme"],
        "key_holder": spec["key_holder"],
        "preset": spec["preset"],
        "basis": basis,
        "extrapolated": extrapolated,
        "timed_steps": steps,
        "timed_eval_samples": samples,
        "message_shape": measurement["message_shape"],
        "step_seconds": round(train["seconds"] / steps, 6),
        "step_seconds_spread": train["step_seconds"],
        "epoch_seconds": round(epoch_train_seconds + epoch_eval_seconds, 4),
        "epoch_train_seconds": round(epoch_train_seconds, 4),
        "epoch_eval_seconds": round(epoch_eval_seconds, 4),
        "bytes_per_step": bytes_per_step,
        "bytes_per_step_total": round(sum(bytes_per_step.values()), 1),
        "messages_per_step": {kind: round(n / steps, 2) for kind, n in train["messages"].items()},
        "bytes_per_epoch": round(sum(train["bytes"].values()) * step_factor + sum(evaluation["bytes"].values()) * eval_factor),
        "phases_per_step": _scaled(train_groups, 1 / steps),
        "phases_per_epoch": _combine(_scaled(train_groups, step_factor, None), _scaled(eval_groups, eval_factor, None)),
        "setup": {
            "seconds": measurement["setup"]["seconds"],
            "keygen_seconds": round(_group_phases(measurement["setup"]["phases"])["keygen"], 6),
            "bytes": measurement["setup"]["bytes"],
        },
        "peak_rss_mb": measurement["memory"]["peak_mb"],
        "memory": measurement["memory"],
    }


def paillier_row(comparison: dict[str, Any], plain: dict[str, Any], shape: EpochShape) -> dict[str, Any]:
    """The Paillier baseline as a protection scheme, extrapolated from per-message costs.

    Receiver-style, like ``key_holder = "receiver"``: each passive's activation and its gradient
    are encrypted by the sender under the receiver's key and decrypted by the receiver, so a
    step is the plaintext step plus, per passive party, two messages' encrypt, serialize,
    deserialize and decrypt; evaluation adds one eval activation per passive per test sample.
    """
    rows, width = plain["message_shape"]
    measured = comparison["messages"][f"{rows}x{width}"]["paillier"]
    per_value = {op: ms / 1e3 for op, ms in measured["per_value_ms"].items()}
    values_per_message = rows * width
    passives = 2
    messages_per_step = {"activation": passives, "gradient": passives}
    crypto_ops = {"encode_encrypt": "encrypt", "serialize": "serialize", "deserialize": "deserialize", "decrypt": "decrypt"}
    per_step_crypto = {cat: per_value[op] * values_per_message * 2 * passives for cat, op in crypto_ops.items()}
    eval_values = passives * shape.n_test * width
    per_epoch_crypto = {cat: per_value[op] * (values_per_message * 2 * passives * shape.steps + eval_values) for cat, op in crypto_ops.items()}
    step_seconds = plain["step_seconds"] + sum(per_step_crypto.values())
    epoch_seconds = plain["epoch_seconds"] + sum(per_epoch_crypto.values())
    message_bytes = measured["bytes"]
    bytes_per_step = {kind: float(count * message_bytes) for kind, count in messages_per_step.items()}
    return {
        "scheme": "paillier",
        "key_holder": "receiver",
        "preset": f"{comparison['key_bits']}-bit",
        "basis": (
            f"extrapolated: {measured['timed_values']} of {measured['values']} values of a {rows}x{width} message timed, "
            f"x {2 * passives} messages per step, + the plaintext row's compute"
        ),
        "extrapolated": True,
        "message_shape": [rows, width],
        "step_seconds": round(step_seconds, 6),
        "epoch_seconds": round(epoch_seconds, 4),
        "bytes_per_step": bytes_per_step,
        "bytes_per_step_total": round(sum(bytes_per_step.values()), 1),
        "messages_per_step": {kind: float(n) for kind, n in messages_per_step.items()},
        "bytes_per_epoch": round(message_bytes * 2 * passives * shape.steps + message_bytes / values_per_message * eval_values),
        "phases_per_step": _combine(plain["phases_per_step"], per_step_crypto),
        "phases_per_epoch": _combine(plain["phases_per_epoch"], per_epoch_crypto),
        "setup": {"seconds": comparison["keygen_seconds"], "keygen_seconds": comparison["keygen_seconds"], "bytes": {}},
        "peak_rss_mb": None,
        "gmpy2": comparison["gmpy2"],
        "note": "ciphertext bytes only (no frame headers); peak memory not measured for this extrapolated row",
    }


def add_ratios(rows: dict[str, dict[str, Any]]) -> None:
    """Encrypted / plaintext step and epoch seconds and bytes, for every row (in place)."""
    plain = rows.get(PlainScheme.name)
    for row in rows.values():
        if plain is None:
            row["ratio_to_plain"] = None
            continue
        row["ratio_to_plain"] = {
            "step": round(row["step_seconds"] / plain["step_seconds"], 2),
            "epoch": round(row["epoch_seconds"] / plain["epoch_seconds"], 2),
            "bytes_per_step": round(row["bytes_per_step_total"] / plain["bytes_per_step_total"], 2),
        }


def evaluate_targets(rows: dict[str, dict[str, Any]], comparison: dict[str, Any] | None, message: str | None) -> dict[str, Any]:
    """The issue's two targets, each with the measured value and whether it is met (None: not measured)."""
    receiver = rows.get("ckks/receiver/transport")
    ratio = receiver["ratio_to_plain"]["epoch"] if receiver and receiver.get("ratio_to_plain") else None
    cap = TARGETS["receiver_transport_epoch_ratio_max"]
    out: dict[str, Any] = {
        "receiver_transport_epoch_ratio": {
            "value": ratio,
            "target": f"<= {cap:g}",
            "met": None if ratio is None else ratio <= cap,
            "basis": receiver["basis"] if receiver else None,
        }
    }
    speedup = None
    if comparison is not None and message is not None and message in comparison["messages"]:
        speedup = comparison["messages"][message]["ratio"]["encrypt"]
    floor = TARGETS["ckks_vs_paillier_encrypt_min"]
    out["ckks_vs_paillier_encrypt"] = {
        "value": speedup,
        "message": message,
        "target": f">= {floor:g}",
        "met": None if speedup is None else speedup >= floor,
        "paillier_gmpy2": comparison["gmpy2"] if comparison else None,
    }
    return out


# ----------------------------------------------------------------------------------- rendering


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f}"


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds:,.0f} ({seconds / 3600:,.1f} h)"
    return f"{seconds:,.1f}" if seconds >= 10 else f"{seconds:.2f}"


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _ratio(row: dict[str, Any], key: str) -> str:
    ratios = row.get("ratio_to_plain")
    return "-" if not ratios else f"{ratios[key]:,.1f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _label(key: str, row: dict[str, Any]) -> str:
    return f"{key}{' *' if row.get('extrapolated') else ''}"


def render_markdown(report: dict[str, Any]) -> str:
    """The tables of ``bench.md`` (also printed by ``securevfl bench``)."""
    rows: dict[str, dict[str, Any]] = report["schemes"]
    lines = _header(report)
    if rows:
        lines += _overhead_section(rows, report["memory_method"])
    else:
        lines += ["", "No protection scheme was measured (see --only)."]
    lines += _targets_section(report["targets"])
    if rows:
        lines += _bytes_section(rows) + _phases_section(rows)
    if report.get("paillier"):
        lines += _paillier_section(report["paillier"])
    lines += ["", f"Regenerate: `{report['command']}`", ""]
    return "\n".join(lines)


def _header(report: dict[str, Any]) -> list[str]:
    work, machine = report["workload"], report["machine"]
    epoch = work["epoch"]
    return [
        "# securevfl overhead benchmark",
        "",
        (
            f"securevfl {report['version']}, {report['created']}{' (--quick)' if report['quick'] else ''}; "
            f"{machine['cpu_count']} CPU(s), load average {machine['load_average_start']} at start and "
            f"{machine['load_average_end']} at the end (other processes compete when it exceeds the CPU count); "
            "torch threads 1, all parties in one process, one after another."
        ),
        (
            f"Workload: {work['data']}, {work['parties']} passive parties x {work['features_per_party']} features, "
            f"top = {work['top']}, messages {work['message_shape'][0]}x{work['message_shape'][1]}; "
            f"one epoch = {epoch['steps']} steps of {epoch['batch_size']} + evaluation of {epoch['n_test']:,} test samples."
        ),
        "Rows marked * are **extrapolated** to the epoch (column *basis* says from what); the others ran the whole epoch.",
    ]


def _overhead_section(rows: dict[str, dict[str, Any]], memory_method: str) -> list[str]:
    lines = ["", "## Overhead", ""]
    lines += _table(
        ["scheme", "step (ms)", "epoch (s)", "epoch / plaintext", "bytes / step", "bytes / step vs plaintext", "peak RSS (MB)", "basis"],
        [
            [
                _label(key, row),
                _ms(row["step_seconds"]),
                _secs(row["epoch_seconds"]),
                _ratio(row, "epoch"),
                _bytes(row["bytes_per_step_total"]),
                _ratio(row, "bytes_per_step"),
                "-" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:,.0f}",
                row["basis"],
            ]
            for key, row in rows.items()
        ],
    )
    return [*lines, "", f"Peak RSS: {memory_method}; it includes the interpreter, torch and the data set as loaded."]


def _targets_section(targets: dict[str, Any]) -> list[str]:
    lines = ["", "## Targets", ""]
    for name, target in targets.items():
        value = target["value"]
        verdict = "not measured" if target["met"] is None else ("met" if target["met"] else "NOT met")
        shown = "-" if value is None else f"{value:,.1f}x"
        if name == "ckks_vs_paillier_encrypt":
            extra = f" ({target['message']} message; python-paillier {'with' if target['paillier_gmpy2'] else 'without'} gmpy2)"
        else:
            extra = f" ({target['basis']})" if target.get("basis") else ""
        lines.append(f"- {name}: {shown}, target {target['target']}: **{verdict}**{extra}")
    return lines


def _bytes_section(rows: dict[str, dict[str, Any]]) -> list[str]:
    kind_rows = [
        [_label(key, row), kind, f"{row['messages_per_step'].get(kind, 0):g}", _bytes(n)]
        for key, row in rows.items()
        for kind, n in row["bytes_per_step"].items()
    ]
    return ["", "## Bytes per training step, by message kind", "", *_table(["scheme", "kind", "messages / step", "bytes / step"], kind_rows)]


def _phases_section(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "## Where an epoch's time goes (seconds per epoch; set-up and key generation excluded)", ""]
    lines += _table(
        ["scheme", *CATEGORIES, "other", "epoch", "set-up (keygen)"],
        [
            [_label(key, row)]
            + [_secs(row["phases_per_epoch"].get(cat, 0.0)) for cat in (*CATEGORIES, "other")]
            + [_secs(row["epoch_seconds"]), f"{_secs(row['setup']['seconds'])} ({_secs(row['setup']['keygen_seconds'])})"]
            for key, row in rows.items()
        ],
    )
    return [*lines, "", OVERLAP_NOTE]


def _paillier_section(comparison: dict[str, Any]) -> list[str]:
    lines = [
        "",
        (
            f"## CKKS vs Paillier on the same message (ms per message; Paillier: {comparison['library']} "
            f"{comparison['version']}, {comparison['key_bits']}-bit keys, gmpy2 {'yes' if comparison['gmpy2'] else 'no'})"
        ),
        "",
    ]
    cmp_rows = []
    for message, entry in comparison["messages"].items():
        pail, ckks, ratio = entry["paillier"], entry["ckks"], entry["ratio"]
        for op in OPERATIONS:
            cmp_rows.append([message, op, f"{pail['message_ms'][op]:,.1f}", f"{ckks['message_ms'][op]:,.3f}", f"{ratio[op]:,.1f}x"])
        trip = entry["round_trip_ms"]
        cmp_rows.append([message, "round trip", f"{trip['paillier']:,.1f}", f"{trip['ckks']:,.3f}", f"{ratio['round_trip']:,.1f}x"])
        cmp_rows.append([message, "bytes", _bytes(pail["bytes"]), _bytes(ckks["bytes"]), f"{ratio['bytes']:,.1f}x"])
    lines += _table(["message", "operation", "Paillier", f"CKKS ({comparison['ckks_preset']})", "Paillier / CKKS"], cmp_rows)
    first = next(iter(comparison["messages"].values()))
    lines += [
        "",
        (
            f"Paillier: {first['paillier']['basis']} per message (the cost per value is constant); "
            f"CKKS: the whole message, {first['ckks']['basis']}, public-key encryption at the last level, flat layout."
        ),
    ]
    if not comparison["gmpy2"]:
        lines.append(
            "python-paillier ran without gmpy2 (pure-Python big integers). FATE runs it with gmpy2, which makes "
            "Paillier several times faster: `pip install gmpy2` and rerun for the baseline FATE users actually get."
        )
    return lines


def _plot(report: dict[str, Any], path: Path) -> str | None:
    """Epoch seconds and bytes per step per scheme (log scales), extrapolated bars hatched.

    Returns why no plot was drawn, or None when it was.
    """
    rows = report["schemes"]
    if not rows:
        return "no plot: no scheme was measured"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (it is a dependency of securevfl: reinstall the package)"
    names = list(rows)
    hatches = ["//" if rows[n].get("extrapolated") else "" for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 2.2))
    panels = [
        (axes[0], [rows[n]["epoch_seconds"] for n in names], "seconds per epoch (log)", "epoch"),
        (axes[1], [rows[n]["bytes_per_step_total"] for n in names], "bytes per training step (log)", "bytes_per_step"),
    ]
    for axis, values, title, ratio_key in panels:
        colors = ["#4c72b0" if n == PlainScheme.name else "#8c8c8c" if n == PAILLIER_KEY else "#dd8452" for n in names]
        bars = axis.barh(names, values, color=colors)
        for bar, hatch, name in zip(bars, hatches, names, strict=True):
            bar.set_hatch(hatch)
            ratios = rows[name].get("ratio_to_plain")
            if ratios:
                axis.annotate(f" {ratios[ratio_key]:,.1f}x", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
        axis.set_xscale("log")
        low, high = min(v for v in values if v > 0), max(values)
        axis.set_xlim(low / 2, high * 20)  # room for the ratio labels
        axis.set_title(title)
        axis.invert_yaxis()
    axes[1].set_yticklabels([])
    work = report["workload"]
    fig.suptitle(
        f"securevfl overhead, MNIST-sized messages {work['message_shape'][0]}x{work['message_shape'][1]} "
        f"(hatched: extrapolated; labels: x plaintext)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def write_outputs(report: dict[str, Any], out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Path | None]:
    """``bench.json``, ``bench.md`` and (with matplotlib, and rows to draw) ``bench.png`` in ``out_dir``.

    Returns the paths written; ``plot`` is None, and ``log`` is told why, when there is no plot.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, table_path, plot_path = out_dir / "bench.json", out_dir / "bench.md", out_dir / "bench.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table_path.write_text(render_markdown(report), encoding="utf-8")
    skipped = _plot(report, plot_path)
    if skipped is not None:
        log(skipped)
    return {"json": json_path, "table": table_path, "plot": None if skipped else plot_path}
