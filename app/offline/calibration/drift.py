"""Bucket edges and the reference distribution that the service uses for drift accounting (PSI)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["drift_edges", "reference_fractions"]

Array = npt.NDArray[np.float64]


def drift_edges(calibrated: Array, buckets: int = 10) -> list[float]:
    """Interior edges of `buckets` equal-mass buckets of calibrated predictions, strictly inside (0, 1).

    Repeated quantiles (many equal predictions) merge buckets; at least one edge always remains.
    """
    quantiles = np.quantile(np.asarray(calibrated, dtype=np.float64), np.linspace(0, 1, buckets + 1)[1:-1])
    edges = np.unique(np.clip(quantiles, 1e-9, 1 - 1e-9))
    if edges.size == 0:
        edges = np.array([0.5])
    return [float(e) for e in edges]


def reference_fractions(calibrated: Array, edges: list[float]) -> list[float]:
    """Share of predictions per bucket (len(edges) + 1 values summing to 1); bucket i is (e[i-1], e[i]]."""
    index = np.searchsorted(np.asarray(edges), calibrated, side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    fractions = counts / counts.sum()
    return [float(f) for f in fractions]
