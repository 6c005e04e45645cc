"""Reading labels off recovered gradient rows ``G = dL/dH`` when no entry is one class's.

Under the sum top a row is ``softmax - onehot`` and its argmin is the label. Under a trainable
top the row is ``dL/dH`` at the input of the active party's network: no entry belongs to a
class, but rows of one class still point the same way, because they are the class's
``softmax - onehot`` pushed back through the same top weights. The scorers of Li et al.,
"Label Leakage and Protection in Two-party Split Learning" (ICLR 2022), and clustering use that:

- **norm** (binary only): the positive / minority class gets the larger gradients. It says which
  of *two* groups a sample is in, so it is reported only when there are two classes;
- **direction**: cosine similarity with the mean direction of the rows of a few samples whose
  labels the attacker knows, one mean per class; the label is the most similar class;
- **cluster**: k-means (k = classes) on unit-length rows; each cluster is named by the majority
  label of the known samples in it (by the nearest class direction when it holds none).

Every scorer sees only what the attacker holds (its recovered rows and its known labels).
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_directions", "cluster_labels", "direction_labels", "kmeans", "norm_labels", "unit_rows"]


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length (zero rows stay zero): direction, not magnitude."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows, dtype=np.float64), where=norms > 0)


def class_directions(known_rows: np.ndarray, known_labels: np.ndarray, classes: int) -> np.ndarray:
    """Mean unit direction of the known rows of each class (a zero row for a class with none)."""
    units = unit_rows(known_rows)
    directions = np.zeros((classes, known_rows.shape[1]))
    for label in range(classes):
        members = units[known_labels == label]
        if len(members):
            directions[label] = members.mean(axis=0)
    return unit_rows(directions)


def direction_labels(rows: np.ndarray, known_rows: np.ndarray, known_labels: np.ndarray, classes: int) -> np.ndarray:
    """Each row's label: the class whose known rows' mean direction is most cosine-similar to it."""
    return np.argmax(unit_rows(rows) @ class_directions(known_rows, known_labels, classes).T, axis=1)


def norm_labels(rows: np.ndarray, known_rows: np.ndarray, known_labels: np.ndarray) -> np.ndarray:
    """Binary labels from row norms: above the midpoint of the two classes' known mean norms => the larger one's class.

    Li et al.'s norm attack ranks samples by ``||g||``; the known samples only fix the threshold
    and which side is which (the paper assumes the positive class is the larger side).
    """
    norms = np.linalg.norm(rows, axis=1)
    known_norms = np.linalg.norm(known_rows, axis=1)
    means = np.array([known_norms[known_labels == label].mean() if np.any(known_labels == label) else np.nan for label in (0, 1)])
    if np.isnan(means).any():
        means = np.nan_to_num(means, nan=float(np.median(norms)))
    high = int(np.argmax(means))
    return np.where(norms > means.mean(), high, 1 - high)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 4, iterations: int = 50) -> np.ndarray:
    """Cluster index of every point: Lloyd's k-means from k-means++ seeds, best of ``restarts`` by inertia.

    Plain numpy and a given generator, so the same rows and seed give the same clusters.
    """
    k = min(k, len(points))
    best, best_inertia = np.zeros(len(points), dtype=np.int64), np.inf
    for _ in range(restarts):
        centers = _kmeans_plus_plus(points, k, rng)
        assign = np.zeros(len(points), dtype=np.int64)
        for iteration in range(iterations):
            new_assign = np.argmin(_squared_distances(points, centers), axis=1)
            if iteration > 0 and np.array_equal(new_assign, assign):
                break
            assign = new_assign
            for cluster in range(k):
                members = points[assign == cluster]
                if len(members):
                    centers[cluster] = members.mean(axis=0)
        inertia = float(_squared_distances(points, centers)[np.arange(len(points)), assign].sum())
        if inertia < best_inertia:
            best, best_inertia = assign, inertia
    return best


def _squared_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return np.maximum((points**2).sum(1)[:, None] - 2 * points @ centers.T + (centers**2).sum(1)[None, :], 0.0)


def _kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Seeds far apart from each other (Arthur and Vassilvitskii), so few restarts suffice."""
    centers = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        distances = _squared_distances(points, np.array(centers)).min(axis=1)
        total = distances.sum()
        index = rng.integers(len(points)) if total <= 0 else rng.choice(len(points), p=distances / total)
        centers.append(points[index])
    return np.array(centers, dtype=np.float64)


def cluster_labels(
    rows: np.ndarray, known: np.ndarray, known_labels: np.ndarray, classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Each row's label from k-means on unit rows; ``known`` are positions (in ``rows``) of the known-label samples.

    A cluster is named by the majority of its known labels; a cluster without a known sample by
    the class direction nearest its centre. Two clusters may carry one name.
    """
    units = unit_rows(rows)
    assign = kmeans(units, classes, rng)
    directions = class_directions(rows[known], known_labels, classes)
    names = np.zeros(assign.max() + 1, dtype=np.int64)
    for cluster in np.unique(assign):
        inside = known_labels[assign[known] == cluster]
        if len(inside):
            names[cluster] = np.bincount(inside, minlength=classes).argmax()
        else:
            names[cluster] = int(np.argmax(directions @ units[assign == cluster].mean(axis=0)))
    return names[assign]
