"""Offline metrics of probabilistic predictions (all arrays are 1-D [R], labels in {0, 1}).

- calibration ratio = sum(p) / sum(y): 1 is calibrated, above 1 over-predicts;
- ECE (equal-mass) = sum_b (n_b / n) |mean(p)_b - mean(y)_b| over `bins` buckets of the rows sorted
  by p, of sizes differing by at most one (np.array_split of the sorted order);
- ECE (equal-width) = the same sum over the buckets [0, 1/B], (1/B, 2/B], ... of p (a p exactly on
  an edge falls in the lower bucket, as in sklearn's `calibration_curve`); empty buckets add nothing;
- Field-RCE of a segment feature = sum_v |sum_{i in v} p_i - sum_{i in v} y_i| / sum_i y_i over its
  values v: the per-value relative calibration error |P_v - Y_v| / Y_v weighted by the value's share of
  positives Y_v / Y (so a value without positives still counts its over-prediction). 0 is calibrated
  in every value; a globally calibrated model that over-predicts one value and under-predicts another
  by the same amount still scores > 0;
- logloss = -mean(y log p + (1 - y) log(1 - p)), p clipped to [1e-15, 1 - 1e-15];
- normalised entropy = logloss / H(mean(y)), the logloss of always predicting the base rate;
- Brier = mean((p - y)^2);
- AUC = probability that a random positive outranks a random negative (ties count one half);
- precision / recall / F1 at a threshold: predicted positive means p >= threshold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "auc",
    "brier",
    "calibration_ratio",
    "ece_equal_mass",
    "ece_equal_width",
    "field_rce",
    "logloss",
    "normalised_entropy",
    "precision_recall_f1",
    "summary",
]

Array = npt.NDArray[np.float64]
_EPS = 1e-15


def calibration_ratio(p: Array, y: Array) -> float:
    positives = float(np.sum(y))
    return float(np.sum(p)) / positives if positives > 0 else float("nan")


def logloss(p: Array, y: Array) -> float:
    q = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def normalised_entropy(p: Array, y: Array) -> float:
    base = float(np.mean(y))
    if base <= 0 or base >= 1:
        return float("nan")
    entropy = -(base * np.log(base) + (1 - base) * np.log1p(-base))
    return logloss(p, y) / float(entropy)


def brier(p: Array, y: Array) -> float:
    return float(np.mean((p - y) ** 2))


def ece_equal_mass(p: Array, y: Array, bins: int = 10, *, order: npt.NDArray[np.intp] | None = None) -> float:
    """`order`: np.argsort(p, kind="stable") when the caller has it already (sorting dominates the cost)."""
    order = np.argsort(p, kind="stable") if order is None else order
    total = len(p)
    ece = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            ece += chunk.size / total * abs(float(np.mean(p[chunk])) - float(np.mean(y[chunk])))
    return ece


def ece_equal_width(p: Array, y: Array, bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], p, side="left")
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_y = np.bincount(index, weights=y, minlength=bins)
    # |mean(p)_b - mean(y)_b| * n_b / n = |sum(p)_b - sum(y)_b| / n
    return float(np.sum(np.abs(sum_p - sum_y)) / max(len(p), 1))


def field_rce(p: Array, y: Array, values: npt.NDArray[np.generic]) -> float:
    """Field-RCE of one segment feature; values: [R] the feature's value per row (any hashable dtype)."""
    positives = float(np.sum(y))
    if positives <= 0:
        return float("nan")
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer) and (values.size == 0 or values.min() >= 0):
        codes = values.astype(np.intp)  # already codes: skip the sort
    else:
        codes = np.unique(values, return_inverse=True)[1].reshape(-1)
    sum_p = np.bincount(codes, weights=p)
    sum_y = np.bincount(codes, weights=y)
    return float(np.sum(np.abs(sum_p - sum_y)) / positives)


def auc(p: Array, y: Array, *, order: npt.NDArray[np.intp] | None = None) -> float:
    """`order`: any argsort of p (ties are averaged whatever their order)."""
    positives = float(np.sum(y))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(p, kind="stable") if order is None else order
    sorted_p = p[order]
    ranks = np.empty(len(p), dtype=np.float64)
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], len(p)]
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    return float((np.sum(ranks[y > 0]) - positives * (positives + 1) / 2) / (positives * negatives))


def precision_recall_f1(p: Array, y: Array, threshold: float) -> tuple[float, float, float]:
    """(precision, recall, F1) of the decision p >= threshold; F1 = 2TP / (2TP + FP + FN).

    Precision is NaN when nothing is predicted positive, recall when no label is positive, F1 when both.
    """
    predicted = p >= threshold
    positive = y > 0
    true_positives = float(np.sum(predicted & positive))
    n_predicted, n_positive = float(np.sum(predicted)), float(np.sum(positive))
    precision = true_positives / n_predicted if n_predicted else float("nan")
    recall = true_positives / n_positive if n_positive else float("nan")
    denominator = n_predicted + n_positive  # = 2TP + FP + FN
    return precision, recall, (2 * true_positives / denominator if denominator else float("nan"))


def summary(p: Array, y: Array) -> dict[str, float]:
    """The metric set stored in manifests and calibration files."""
    order = np.argsort(p, kind="stable")  # shared by the equal-mass ECE and the AUC
    return {
        "count": float(len(y)),
        "positives": float(np.sum(y)),
        "calibration_ratio": calibration_ratio(p, y),
        "ece": ece_equal_mass(p, y, order=order),
        "ece_equal_width": ece_equal_width(p, y),
        "logloss": logloss(p, y),
        "normalised_entropy": normalised_entropy(p, y),
        "brier": brier(p, y),
        "auc": auc(p, y, order=order),
    }
