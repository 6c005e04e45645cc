"""NUS-WIDE, in its official release layout and as the small CSV sample shipped with FATE.

NUS-WIDE is the standard two-party VFL benchmark: one organisation holds 634 low-level image
features, another the 1,000-tag text vector of the same Flickr images. Both loaders expose that
split as the feature groups ``image``/``text`` (official) and ``guest``/``host`` (FATE), so the
``groups`` partition mode reproduces it directly.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from securevfl.data.dataset import VFLDataset
from securevfl.data.preprocess import stratified_split
from securevfl.errors import DataError

__all__ = ["FATE_FILES", "NUSWIDE_LOW_LEVEL", "NUSWIDE_TAGS", "load_nuswide", "load_nuswide_fate"]

logger = logging.getLogger(__name__)

#: Low-level image descriptors of the official release, in column order, with their widths:
#: colour histogram, block-wise colour moments, colour correlogram, edge direction histogram,
#: wavelet texture (64 + 225 + 144 + 73 + 128 = 634 columns).
NUSWIDE_LOW_LEVEL: tuple[tuple[str, int], ...] = (
    ("CH", 64), ("CM55", 225), ("CORR", 144), ("EDH", 73), ("WT", 128))
#: Width of the binary tag vector (the 1,000 most frequent Flickr tags).
NUSWIDE_TAGS = 1000
_SPLITS = {"train": "Train", "test": "Test"}

#: Files of FATE's NUS-WIDE sample used by :func:`load_nuswide_fate`.
FATE_FILES: dict[str, str] = {
    "guest": "nus_wide_train_guest_600.csv",
    "host": "nus_wide_train_host.csv",
}


# --------------------------------------------------------------------------- official layout


def load_nuswide(directory: str | Path, labels: Sequence[str]) -> VFLDataset:
    """Load the official NUS-WIDE train/test split restricted to single-label samples.

    Expects ``Low_Level_Features/{Train,Test}_Normalized_{CH,CM55,CORR,EDH,WT}.dat``,
    ``NUS_WID_Tags/{Train,Test}_Tags1k.dat`` and
    ``Groundtruth/TrainTestLabels/Labels_{concept}_{Train,Test}.txt`` under ``directory``.
    A sample is kept when exactly one of ``labels`` is set for it, and its class is that
    concept's position in ``labels``; multi-label and unlabelled images would make the
    classification target ambiguous. Rows are matched across files by line number, so every
    file of a split must have the same number of rows.
    """
    root = _existing_dir(directory, "NUS-WIDE")
    layout = {split: _split_files(root, tag, labels) for split, tag in _SPLITS.items()}
    missing = [str(p.relative_to(root)) for files in layout.values()
               for p in [*files["features"], *files["labels"]] if not p.is_file()]
    if missing:
        raise DataError(f"NUS-WIDE files missing from {root}: {_abbreviate(missing)}")

    arrays = {split: _load_split(root, _SPLITS[split], files, labels)
              for split, files in layout.items()}
    n_image = sum(width for _, width in NUSWIDE_LOW_LEVEL)
    return VFLDataset(
        name="nuswide",
        x_train=arrays["train"][0], y_train=arrays["train"][1],
        x_test=arrays["test"][0], y_test=arrays["test"][1],
        num_classes=len(labels), class_names=tuple(labels),
        feature_groups={"image": tuple(range(n_image)),
                        "text": tuple(range(n_image, n_image + NUSWIDE_TAGS))},
    )


def _split_files(root: Path, tag: str, labels: Sequence[str]) -> dict[str, list[Path]]:
    features = [root / "Low_Level_Features" / f"{tag}_Normalized_{kind}.dat"
                for kind, _ in NUSWIDE_LOW_LEVEL]
    features.append(root / "NUS_WID_Tags" / f"{tag}_Tags1k.dat")
    label_files = [root / "Groundtruth" / "TrainTestLabels" / f"Labels_{c}_{tag}.txt"
                   for c in labels]
    return {"features": features, "labels": label_files}


def _load_split(root: Path, tag: str, files: dict[str, list[Path]],
                labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    columns = [_read_label_file(p) for p in files["labels"]]
    counts = {p: len(c) for p, c in zip(files["labels"], columns)}
    _check_counts(root, counts)  # before stacking, which would fail with a shape error
    indicators = np.stack(columns, axis=1)
    keep = indicators.sum(axis=1) == 1
    widths = [w for _, w in NUSWIDE_LOW_LEVEL] + [NUSWIDE_TAGS]
    blocks = []
    for path, width in zip(files["features"], widths):
        block, counts[path] = _read_rows(path, keep, width)
        blocks.append(block)
    _check_counts(root, counts)
    if not keep.any():
        raise DataError(f"NUS-WIDE {tag}: no sample has exactly one of the labels {list(labels)}")
    return np.concatenate(blocks, axis=1), indicators[keep].argmax(axis=1).astype(np.int64)


def _check_counts(root: Path, counts: dict[Path, int]) -> None:
    if len(set(counts.values())) > 1:
        raise DataError(f"NUS-WIDE row counts disagree between files (rows are matched by line "
                        f"number): {_describe_counts(root, counts)}")


def _read_label_file(path: Path) -> np.ndarray:
    values = _loadtxt(path, _lines(path), dtype=np.int64, ndmin=1)
    if values.ndim != 1:
        raise DataError(f"{path}: expected one 0/1 label per line")
    if values.size and not np.isin(values, (0, 1)).all():
        raise DataError(f"{path}: labels must be 0 or 1")
    return values


def _read_rows(path: Path, keep: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """Parse only the rows to keep (the full release is gigabytes of text) and count all rows."""
    total = 0

    def kept_lines() -> Iterator[str]:
        nonlocal total
        for line in _lines(path):
            if total < len(keep) and keep[total]:
                yield line
            total += 1

    x = _loadtxt(path, kept_lines(), dtype=np.float32, ndmin=2)
    if x.size == 0:
        x = x.reshape(0, width)
    if x.shape[1] != width:
        raise DataError(f"{path}: {x.shape[1]} values per row, expected {width}")
    return x, total


def _lines(path: Path) -> Iterator[str]:
    with path.open("r", encoding="ascii", errors="replace") as handle:
        for line in handle:
            if line.strip():
                yield line


def _describe_counts(root: Path, counts: dict[Path, int]) -> str:
    by_count: dict[int, list[str]] = {}
    for path, n in counts.items():
        by_count.setdefault(n, []).append(str(path.relative_to(root)))
    return "; ".join(f"{n} rows in {_abbreviate(names)}" for n, names in sorted(by_count.items()))


# --------------------------------------------------------------------------- FATE CSV sample


def load_nuswide_fate(directory: str | Path, test_fraction: float = 0.2,
                      split_seed: int = 0) -> VFLDataset:
    """Load FATE's NUS-WIDE sample: guest image features + label joined by id with host tags.

    ``nus_wide_train_guest_600.csv`` has the header ``id,0..633,y`` (599 rows, binary ``y``);
    ``nus_wide_train_host.csv`` has ``id,0..999`` (1,000 rows of 0/1 tags). Rows are joined by
    ``id`` (inner join, in guest order) and the number matched is logged. FATE's
    ``nus_wide_validate_host.csv`` is deliberately not read: its ids (2000..2899) have no guest
    rows and hence neither image features nor labels. With no labelled test split available, the
    joined rows are split here, stratified, with ``test_fraction`` and ``split_seed``.
    """
    root = _existing_dir(directory, "FATE NUS-WIDE")
    paths = {role: root / name for role, name in FATE_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"FATE NUS-WIDE files missing from {root}: {', '.join(missing)}")

    guest_ids, guest_values, guest_header = _read_id_csv(paths["guest"])
    if guest_header[-1] != "y":
        raise DataError(f"{paths['guest']}: last column must be the label 'y', "
                        f"found {guest_header[-1]!r}")
    host_ids, host_x, _ = _read_id_csv(paths["host"])
    guest_x, y_raw = guest_values[:, :-1], guest_values[:, -1]

    _, guest_rows, host_rows = np.intersect1d(guest_ids, host_ids, assume_unique=True,
                                              return_indices=True)
    order = np.argsort(guest_rows)
    guest_rows, host_rows = guest_rows[order], host_rows[order]
    logger.info("nuswide_fate: %d of %d guest rows matched one of %d host rows by id",
                len(guest_rows), len(guest_ids), len(host_ids))
    if len(guest_rows) == 0:
        raise DataError(f"no id of {paths['guest'].name} occurs in {paths['host'].name}")

    y_matched = y_raw[guest_rows]
    if not np.array_equal(y_matched, np.round(y_matched)) or y_matched.min() < 0:
        raise DataError(f"{paths['guest']}: labels in column 'y' must be integers >= 0")
    y = y_matched.astype(np.int64)
    x = np.concatenate([guest_x[guest_rows], host_x[host_rows]], axis=1).astype(np.float32)
    n_classes = max(int(y.max()) + 1, 2)
    x_train, x_test, y_train, y_test = stratified_split("nuswide_fate", x, y, test_fraction,
                                                        split_seed)
    n_guest = guest_x.shape[1]
    return VFLDataset(
        name="nuswide_fate", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=n_classes, class_names=tuple(str(c) for c in range(n_classes)),
        feature_groups={"guest": tuple(range(n_guest)),
                        "host": tuple(range(n_guest, x.shape[1]))},
    )


def _read_id_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a CSV whose first column is ``id``; return ids, the other columns, and the header."""
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    if len(header) < 2 or header[0] != "id":
        raise DataError(f"{path}: expected a header starting with 'id' and at least one more "
                        f"column")
    values = _loadtxt(path, _lines(path), delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if values.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    if values.shape[1] != len(header):
        raise DataError(f"{path}: rows have {values.shape[1]} values, header has {len(header)}")
    ids = values[:, 0]
    if not np.array_equal(ids, np.round(ids)):
        raise DataError(f"{path}: ids must be integers")
    ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{path}: ids are not unique")
    return ids, values[:, 1:], header


# --------------------------------------------------------------------------- shared helpers


def _existing_dir(directory: str | Path, what: str) -> Path:
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(f"{what} directory {root} does not exist (or is not a directory)")
    return root


def _loadtxt(path: Path, lines: Iterable[str], **kwargs: object) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # An empty selection is legitimate here and reported by the callers in context.
            warnings.filterwarnings("ignore", message=".*input contained no data",
                                    category=UserWarning)
            return np.loadtxt(lines, **kwargs)
    except ValueError as exc:  # ragged rows, non-numeric text
        raise DataError(f"{path}: cannot parse as a numeric table ({exc})") from exc


def _abbreviate(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"
