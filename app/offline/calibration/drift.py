"""Bucket edges and the reference distribution that the service uses for drift accounting (PSI)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["drift_edges", "reference_fractions"]

Array = npt.NDArray[np.float64]


def _weighted_quantiles(values: Array, weights: Array, levels: Array) -> Array:
    """Inverted-CDF quantiles: the smallest value whose cumulative weight reaches level * total."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = np.searchsorted(cumulative, levels * cumulative[-1], side="left")
    return np.asarray(values[order][np.minimum(index, len(values) - 1)])


def drift_edges(calibrated: Array, buckets: int = 10, weights: Array | None = None) -> list[float]:
    """Interior edges of `buckets` equal-mass buckets of calibrated predictions, strictly inside (0, 1).

    With `weights` ([R], e.g. the row counts of fine bins) the buckets hold equal weight.
    Repeated quantiles (many equal predictions) merge buckets; at least one edge always remains.
    """
    values = np.asarray(calibrated, dtype=np.float64)
    levels = np.linspace(0, 1, buckets + 1)[1:-1]
    if weights is None:
        quantiles = np.quantile(values, levels)
    else:
        quantiles = _weighted_quantiles(values, np.asarray(weights, dtype=np.float64), levels)
    edges = np.unique(np.clip(quantiles, 1e-9, 1 - 1e-9))
    if edges.size == 0:
        edges = np.array([0.5])
    return [float(e) for e in edges]


def reference_fractions(calibrated: Array, edges: list[float], weights: Array | None = None) -> list[float]:
    """Share of predictions (or of weight) per bucket, len(edges) + 1 values summing to 1; bucket i is
    (e[i-1], e[i]]."""
    index = np.searchsorted(np.asarray(edges), calibrated, side="left")
    counts = np.bincount(index, weights=weights, minlength=len(edges) + 1).astype(np.float64)
    fractions = counts / counts.sum()
    return [float(f) for f in fractions]
