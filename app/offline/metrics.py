"""Offline metrics of probabilistic predictions (all arrays are 1-D [R], labels in {0, 1}).

- calibration ratio = sum(p) / sum(y): 1 is calibrated, above 1 over-predicts;
- ECE (equal-mass) = sum_b (n_b / n) |mean(p)_b - mean(y)_b| over `bins` quantile buckets of p;
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
    "auc", "brier", "calibration_ratio", "ece_equal_mass", "logloss", "normalised_entropy",
    "precision_recall_f1", "summary",
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


def ece_equal_mass(p: Array, y: Array, bins: int = 10) -> float:
    order = np.argsort(p, kind="stable")
    total = len(p)
    ece = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            ece += chunk.size / total * abs(float(np.mean(p[chunk])) - float(np.mean(y[chunk])))
    return ece


def auc(p: Array, y: Array) -> float:
    positives = float(np.sum(y))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
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
    return {
        "count": float(len(y)),
        "positives": float(np.sum(y)),
        "calibration_ratio": calibration_ratio(p, y),
        "ece": ece_equal_mass(p, y),
        "logloss": logloss(p, y),
        "normalised_entropy": normalised_entropy(p, y),
        "brier": brier(p, y),
        "auc": auc(p, y),
    }
