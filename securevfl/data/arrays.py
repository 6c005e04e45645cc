"""Data sets from a user's own numpy arrays or pandas DataFrame, and which party holds which column.

The built-in loaders (:func:`securevfl.data.load_dataset`) know their files; a user's data arrives
as whatever their pipeline produced: float64 or integer matrices, labels that are strings or
arbitrary integers, a DataFrame with an id column. The builders here do the conversions a
:class:`~securevfl.data.VFLDataset` insists on (float32 features, int64 labels 0..C-1) once, and
refuse what cannot be converted faithfully (NaN/Inf, text columns) with one
:class:`~securevfl.errors.DataError` line that names the column, instead of letting a bad value
surface later as a diverged training run.

The party assignment (``{"bank": ["age", "income"], "insurer": [...], "active": [...]}``) is
turned into the existing partition configuration: each party becomes one named feature group and
the :class:`~securevfl.data.PartitionConfig` selects those groups in block order
(``split = "groups"``), so :func:`securevfl.data.partition_columns` divides the columns exactly
as it does for the built-in data sets and its exact-cover check still applies.

pandas is not a dependency: a DataFrame is used through ``.columns``, ``[]`` and
``Series.to_numpy`` only, so nothing here imports pandas.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from securevfl.data.config import PartitionConfig
from securevfl.data.dataset import VFLDataset
from securevfl.data.preprocess import standardize as standardize_dataset
from securevfl.data.preprocess import stratified_split
from securevfl.errors import DataError

__all__ = [
    "ACTIVE_PARTY",
    "PartitionedDataset",
    "PartyAssignment",
    "dataset_from_arrays",
    "dataset_from_dataframe",
]

ACTIVE_PARTY = "active"
"""The key of a party assignment that names the active party's own columns (the party that also
holds the labels). Every other key is a passive party, in the order given."""

PartyAssignment = Mapping[str, Sequence[Hashable]]
"""Party name -> that party's columns: names (DataFrame columns, or ``feature_names`` for arrays)
or, for arrays, 0-based column positions."""

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class PartitionedDataset:
    """A :class:`~securevfl.data.VFLDataset` and, optionally, which party holds which of its columns.

    Returned by :func:`dataset_from_arrays` and :func:`dataset_from_dataframe`, and accepted by
    :func:`securevfl.train`. When ``parties`` is set the data itself decides the vertical split
    (and a run's configuration must not have a ``parties`` section of its own); when it is
    ``None`` the run's ``parties`` section decides, as for the built-in data sets.
    """

    dataset: VFLDataset
    """The converted data: float32 features, int64 labels 0..C-1, train and test splits."""
    parties: PartitionConfig | None
    """The partition configuration the assignment maps to (one named group per party,
    ``split = "groups"``), or ``None`` without an assignment."""
    party_names: tuple[str, ...]
    """One name per feature block in block order, which is also the order of ``bottom_models``:
    passive parties as given, then ``"active"`` when the active party holds columns. Empty
    without an assignment."""
    feature_names: tuple[str, ...]
    """One name per feature column of ``dataset`` (``x0``, ``x1``, ... for unnamed arrays)."""

    @property
    def class_names(self) -> tuple[str, ...]:
        """The original label values, as text; label ``i`` of the data set is ``class_names[i]``."""
        return self.dataset.class_names

    @property
    def party_columns(self) -> dict[str, tuple[str, ...]]:
        """Party -> the names of its columns, in the order its bottom model receives them.

        A bottom model sees its party's columns in the order of the original table, whatever
        order the assignment listed them in.
        """
        return {party: tuple(self.feature_names[i] for i in self.dataset.feature_groups[party])
                for party in self.party_names}


def dataset_from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any = None,
    y_test: Any = None,
    *,
    parties: PartyAssignment | None = None,
    feature_names: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
    name: str = "arrays",
) -> PartitionedDataset:
    """Build a data set from feature matrices and label vectors.

    Args:
        x_train: 2-D array-like (samples x features) of bool, integer or float values.
        y_train: 1-D array-like of labels of any type that sorts (ints, strings, bools): the
            distinct values, sorted, become classes 0..C-1 and are kept as ``class_names``.
        x_test, y_test: a test split, both or neither. Without them a stratified, seeded split
            of ``test_fraction`` of the rows becomes the test set.
        parties: party name -> its columns, by position (0-based) or by name when
            ``feature_names`` are given; the key ``"active"`` gives the active party columns of
            its own. Every column must belong to exactly one party. ``None`` leaves the split to
            the run's ``parties`` configuration.
        feature_names: one name per column, used in error messages and by ``parties``.
        test_fraction: share of the rows held out when no test split is given.
        split_seed: seed of that split.
        standardize: z-score every column with the training rows' mean and deviation, as the
            built-in tabular data sets are. Raw scales (incomes next to ratios) train badly,
            and under CKKS large activations leave the encryption's precise range.
        name: the data set's name in messages and in the result.

    Raises:
        DataError: non-numeric, NaN or infinite features, unusable labels, mismatched shapes,
            or a party assignment with unknown, repeated or unassigned columns.
    """
    if (x_test is None) != (y_test is None):
        raise DataError(f"{name}: give both x_test and y_test, or neither (then test_fraction "
                        f"of the rows is held out)")
    x_tr = _as_matrix(x_train, "x_train", name)
    n_features = x_tr.shape[1]
    if feature_names is None:
        names = tuple(f"x{i}" for i in range(n_features))
        lookup: dict[Hashable, int] = {i: i for i in range(n_features)}
    else:
        names = tuple(str(n) for n in feature_names)
        if len(names) != n_features:
            raise DataError(f"{name}: {len(names)} feature_names for {n_features} columns")
        _refuse_repeated(names, name)
        lookup = {**{i: i for i in range(n_features)}, **{n: i for i, n in enumerate(names)}}
    x_tr = _as_float32(x_tr, "x_train", names, name)
    y_tr = _as_labels(y_train, "y_train", len(x_tr), name)
    if x_test is None:
        return _finish(name, x_tr, y_tr, None, None, names, lookup, parties, test_fraction,
                       split_seed, standardize)
    x_te = _as_float32(_as_matrix(x_test, "x_test", name), "x_test", names, name)
    if x_te.shape[1] != n_features:
        raise DataError(f"{name}: x_train has {n_features} columns but x_test has "
                        f"{x_te.shape[1]}")
    y_te = _as_labels(y_test, "y_test", len(x_te), name)
    return _finish(name, x_tr, y_tr, x_te, y_te, names, lookup, parties, test_fraction,
                   split_seed, standardize)


def dataset_from_dataframe(
    frame: Any,
    label: Hashable,
    test_frame: Any = None,
    *,
    parties: PartyAssignment | None = None,
    features: Sequence[Hashable] | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
    name: str = "dataframe",
) -> PartitionedDataset:
    """Build a data set from a pandas DataFrame: feature columns plus one label column.

    Args:
        frame: the training rows (or all rows, when ``test_frame`` is not given).
        label: the label column; its distinct values, sorted, become classes 0..C-1.
        test_frame: test rows with the same columns; without it a stratified, seeded split of
            ``test_fraction`` of ``frame``'s rows becomes the test set.
        parties: party name -> its column names; ``"active"`` gives the active party columns
            of its own. Every feature column must belong to exactly one party.
        features: the feature columns. Default: the columns named in ``parties`` when it is
            given (so an id column can simply be left out of the assignment), otherwise every
            column except ``label``. The data set keeps them in the frame's column order.
        test_fraction, split_seed, standardize, name: as for :func:`dataset_from_arrays`.

    Raises:
        DataError: a missing or non-numeric column (named), NaN or infinite values, unusable
            labels, or a party assignment with unknown, repeated or unassigned columns.
    """
    columns = _frame_columns(frame, "frame", name)
    if label not in columns:
        raise DataError(f"{name}: no label column {label!r}; columns: {_preview(columns)}")
    if features is None:
        if parties is not None:
            assigned = {c for cols in _assignment_items(parties, name).values() for c in cols}
            unknown = [c for c in assigned if c not in columns]
            if unknown:
                raise DataError(f"{name}: parties name unknown column(s) {_preview(unknown)}; "
                                f"columns: {_preview(columns)}")
            feature_labels = [c for c in columns if c in assigned]
        else:
            feature_labels = [c for c in columns if c != label]
    else:
        feature_labels = list(features)
        missing = [c for c in feature_labels if c not in columns]
        if missing:
            raise DataError(f"{name}: no feature column(s) {_preview(missing)}; columns: "
                            f"{_preview(columns)}")
    if label in feature_labels:
        raise DataError(f"{name}: the label column {label!r} cannot also be a feature")
    if not feature_labels:
        raise DataError(f"{name}: no feature columns")
    names = tuple(str(c) for c in feature_labels)
    _refuse_repeated(names, name)
    lookup: dict[Hashable, int] = {c: i for i, c in enumerate(feature_labels)}

    x_tr, y_tr = _frame_arrays(frame, feature_labels, label, "frame", name)
    if test_frame is None:
        return _finish(name, x_tr, y_tr, None, None, names, lookup, parties, test_fraction,
                       split_seed, standardize)
    test_columns = _frame_columns(test_frame, "test_frame", name)
    absent = [c for c in [*feature_labels, label] if c not in test_columns]
    if absent:
        raise DataError(f"{name}: test_frame lacks column(s) {_preview(absent)}")
    x_te, y_te = _frame_arrays(test_frame, feature_labels, label, "test_frame", name)
    return _finish(name, x_tr, y_tr, x_te, y_te, names, lookup, parties, test_fraction,
                   split_seed, standardize)


# --- assembling ---------------------------------------------------------------------------------

def _finish(name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray | None,
            y_te: np.ndarray | None, names: tuple[str, ...], lookup: Mapping[Hashable, int],
            parties: PartyAssignment | None, test_fraction: float, split_seed: int,
            standardize: bool) -> PartitionedDataset:
    """Encode labels, split, check the assignment, build and (optionally) standardise."""
    # The assignment is checked before any splitting so that a typo is reported first.
    if parties is None:
        groups: dict[str, tuple[int, ...]] = {"features": tuple(range(len(names)))}
        partition = None
        order: tuple[str, ...] = ()
    else:
        groups, partition, order = _assignment(parties, names, lookup, name)
    if x_te is None or y_te is None:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"{name}: test_fraction must be between 0 and 1, got {test_fraction}")
        codes, class_names = _encode_labels([y_tr], name)
        x_tr, x_te, y_train, y_test = stratified_split(name, x_tr, codes[0], test_fraction,
                                                       split_seed)
    else:
        (y_train, y_test), class_names = _encode_labels([y_tr, y_te], name)
    dataset = VFLDataset(
        name=name, x_train=x_tr, y_train=y_train, x_test=x_te, y_test=y_test,
        num_classes=len(class_names), class_names=class_names, feature_groups=groups)
    if standardize:
        dataset = standardize_dataset(dataset)
    return PartitionedDataset(dataset=dataset, parties=partition, party_names=order,
                              feature_names=names)


def _assignment(parties: PartyAssignment, names: tuple[str, ...], lookup: Mapping[Hashable, int],
                name: str) -> tuple[dict[str, tuple[int, ...]], PartitionConfig, tuple[str, ...]]:
    """Feature groups (one per party) and the partition configuration that selects them."""
    items = _assignment_items(parties, name)
    owner: dict[int, str] = {}
    groups: dict[str, tuple[int, ...]] = {}
    for party, columns in items.items():
        indices = []
        for column in columns:
            index = lookup.get(_plain_key(column))
            if index is None:
                raise DataError(f"{name}: party {party!r} names unknown column {column!r}; "
                                f"columns: {_preview(names)}")
            if index in owner:
                where = (f"twice to {party!r}" if owner[index] == party
                         else f"to both {owner[index]!r} and {party!r}")
                raise DataError(f"{name}: column {names[index]!r} is assigned {where}; each "
                                f"column belongs to exactly one party")
            owner[index] = party
            indices.append(index)
        groups[party] = tuple(sorted(indices))
    unassigned = [names[i] for i in range(len(names)) if i not in owner]
    if unassigned:
        raise DataError(f"{name}: {len(unassigned)} column(s) assigned to no party: "
                        f"{_preview(unassigned)}; every feature column must belong to exactly "
                        f"one party (leave a column out of the data to drop it)")
    passives = [party for party in items if party != ACTIVE_PARTY]
    if not passives:
        raise DataError(f"{name}: parties needs at least one passive party besides "
                        f"{ACTIVE_PARTY!r}")
    order = (*passives, *([ACTIVE_PARTY] if ACTIVE_PARTY in items else []))
    partition = PartitionConfig(passive=len(passives), split="groups",
                                groups=[[party] for party in order],
                                active_block=ACTIVE_PARTY in items)
    return {party: groups[party] for party in order}, partition, order


def _assignment_items(parties: Any, name: str) -> dict[str, list[Hashable]]:
    """The assignment's shape checked: string party names, each with a non-empty column list."""
    if not isinstance(parties, Mapping) or not parties:
        raise DataError(f"{name}: parties must be a non-empty mapping of party name -> columns, "
                        f"got {type(parties).__name__}")
    items: dict[str, list[Hashable]] = {}
    for party, columns in parties.items():
        if not isinstance(party, str) or not party.strip():
            raise DataError(f"{name}: party names must be non-empty strings, got {party!r}")
        if isinstance(columns, (str, bytes, Mapping)) or not isinstance(columns, Iterable):
            raise DataError(f"{name}: party {party!r} needs a list of columns, got "
                            f"{columns!r} (write [{columns!r}] for a single column)")
        items[party] = list(columns)
        if not items[party]:
            raise DataError(f"{name}: party {party!r} has no columns")
    return items


def _plain_key(column: Hashable) -> Hashable:
    """numpy integers look up like Python ints; bools are not positions."""
    if isinstance(column, (bool, np.bool_)):
        return ("bool", bool(column))  # matches nothing: True is not column 1
    if isinstance(column, np.integer):
        return int(column)
    return column


# --- conversions --------------------------------------------------------------------------------

def _as_matrix(x: Any, what: str, name: str) -> np.ndarray:
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise DataError(f"{name}: {what} is not a rectangular array: {exc}") from None
    if array.ndim != 2:
        raise DataError(f"{name}: {what} must be 2-D (samples x features), got shape "
                        f"{array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{name}: {what} is empty (shape {array.shape})")
    return array


def _as_float32(x: np.ndarray, what: str, names: Sequence[str], name: str) -> np.ndarray:
    """bool/int/float -> float32, refusing text, missing and infinite values by column."""
    if x.dtype.kind == "O":
        for j in range(x.shape[1]):
            bad = next((v for v in x[:, j] if not isinstance(v, numbers.Real)), None)
            if bad is not None:
                raise DataError(f"{name}: {what} column {names[j]!r} is not numeric (holds "
                                f"{bad!r}); encode it as numbers first")
    elif x.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(f"{name}: {what} is not numeric (dtype {x.dtype}, e.g. column "
                        f"{names[0]!r}); encode text or dates as numbers first")
    values = x.astype(np.float64)
    _refuse_non_finite(values, what, names, name, "NaN/Inf")
    if np.abs(values).max(initial=0.0) > _FLOAT32_MAX:
        _refuse_non_finite(np.where(np.abs(values) > _FLOAT32_MAX, np.inf, values), what, names,
                           name, "beyond the float32 range")
    return values.astype(np.float32)


def _refuse_non_finite(values: np.ndarray, what: str, names: Sequence[str], name: str,
                       kind: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{name}: {what} has {int(bad.sum())} value(s) {kind}, the first at row "
                        f"{row}, column {names[col]!r}; impute or drop them first")


def _as_labels(y: Any, what: str, n_rows: int, name: str) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:  # a column vector, e.g. df[["y"]].to_numpy()
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{name}: {what} must be 1-D (one label per row), got shape "
                        f"{labels.shape}; one-hot labels need argmax first")
    if len(labels) != n_rows:
        raise DataError(f"{name}: {len(labels)} labels in {what} for {n_rows} rows")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DataError(f"{name}: {what} has {int((~np.isfinite(labels)).sum())} missing "
                        f"(NaN/Inf) label(s)")
    if labels.dtype.kind == "O" and any(v is None or v != v for v in labels):  # None or NaN
        raise DataError(f"{name}: {what} has missing label(s) (None/NaN)")
    return labels


def _encode_labels(splits: list[np.ndarray], name: str) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Map the sorted distinct values of all splits to 0..C-1 (test-only classes stay valid)."""
    try:
        classes = np.unique(np.concatenate(splits))
    except TypeError as exc:  # e.g. ints mixed with strings
        raise DataError(f"{name}: labels must be of one sortable type: {exc}") from None
    if len(classes) < 2:
        raise DataError(f"{name}: labels take {len(classes)} distinct value(s) "
                        f"{[_label_text(c) for c in classes]}; classification needs at least 2")
    codes = [np.searchsorted(classes, y).astype(np.int64) for y in splits]
    return codes, tuple(_label_text(c) for c in classes)


def _label_text(value: Any) -> str:
    return str(value.item() if isinstance(value, np.generic) else value)


def _frame_columns(frame: Any, what: str, name: str) -> list[Hashable]:
    if not (hasattr(frame, "columns") and hasattr(frame, "__getitem__")):
        raise DataError(f"{name}: {what} must be a pandas DataFrame, got {type(frame).__name__}")
    columns = list(frame.columns)
    if len(columns) != len(set(columns)):
        raise DataError(f"{name}: {what} repeats column name(s) "
                        f"{_preview(sorted({str(c) for c in columns if columns.count(c) > 1}))}")
    return columns


def _frame_arrays(frame: Any, features: Sequence[Hashable], label: Hashable, what: str,
                  name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features column by column (so a bad column is named), then the raw label values."""
    if len(frame) == 0:
        raise DataError(f"{name}: {what} has no rows")
    matrix = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, column in enumerate(features):
        series = frame[column]
        # pandas' own dtypes (Int64, boolean, category, string) carry a numpy-style kind too.
        kind = getattr(series.dtype, "kind", "O")
        if kind not in _NUMERIC_KINDS:
            raise DataError(f"{name}: column {str(column)!r} is not numeric (dtype "
                            f"{series.dtype}); encode it as numbers first, e.g. with "
                            f"pandas.get_dummies")
        matrix[:, j] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    labels = frame[label]
    missing = int(labels.isna().sum()) if hasattr(labels, "isna") else 0
    if missing:  # checked here: pandas' NA has no truth value for the generic check
        raise DataError(f"{name}: label column {str(label)!r} of {what} has {missing} missing "
                        f"value(s)")
    labels = labels.to_numpy()
    return (_as_float32(matrix, what, [str(c) for c in features], name),
            _as_labels(labels, f"label column {str(label)!r} of {what}", len(frame), name))


def _refuse_repeated(names: Sequence[str], name: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{name}: feature names repeat {_preview(repeated)}")


def _preview(items: Sequence[Any], limit: int = 12) -> str:
    """A one-line list, cut after ``limit`` entries so that wide tables keep messages short."""
    shown = ", ".join(repr(item) for item in list(items)[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]"

