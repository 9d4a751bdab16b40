"""Per-cluster sums of the readout's metrics, added batch by batch: what `rollout report` keeps of a joined log.

The readout's intervals resample clusters (sticky keys, else requests), so all it needs of the rows is,
per (scope, arm, cluster), the sum of each metric's numerator and denominator, and per (scope, arm) the
distinct request ids. `ClusterSums` holds exactly that; a joined log of any length is read in batches of
rows and memory grows with the clusters and requests, not with the rows (one row per candidate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ROWS", "SERVED", "ArmSums", "ClusterSums", "Parts", "denominator_of"]

Float = npt.NDArray[np.float64]
Parts = dict[str, tuple[Float, Float]]  # metric -> (numerator per row, denominator per row)
Scope = tuple[str, str] | None  # None: every row; (column, value): a segment
# Denominators shared by metrics found only in some batches (a filter rule, a mix value): summed over every
# batch under these keys, whether or not the batch holds the metric.
ROWS, SERVED = "\0rows", "\0served"
_SHARED = {"filtered:": ROWS, "share:": SERVED}


def denominator_of(metric: str) -> str:
    """The key whose denominator sums a metric uses: a shared one (`ROWS`, `SERVED`) or its own."""
    return next((key for prefix, key in _SHARED.items() if metric.startswith(prefix)), metric)


@dataclass
class ArmSums:
    """One arm in one scope: cluster -> index, per metric the per-cluster sums, the distinct requests."""

    index: dict[str, int] = field(default_factory=dict)
    numerator: dict[str, Float] = field(default_factory=dict)
    denominator: dict[str, Float] = field(default_factory=dict)
    requests: set[str] = field(default_factory=set)

    def add(self, clusters: npt.NDArray[np.str_], requests: npt.NDArray[np.str_], parts: Parts,
            rows: npt.NDArray[np.bool_]) -> None:
        if not rows.any():
            return
        unique, inverse = np.unique(clusters[rows], return_inverse=True)
        known = np.array([self.index.setdefault(c, len(self.index)) for c in unique.tolist()], dtype=np.int64)
        codes = known[inverse.reshape(-1)]
        n = len(self.index)
        for name, (numerator, denominator) in parts.items():
            self.numerator[name] = _grown(self.numerator.get(name), n) + np.bincount(
                codes, weights=numerator[rows], minlength=n)
            if denominator_of(name) == name:
                self.denominator[name] = _grown(self.denominator.get(name), n) + np.bincount(
                    codes, weights=denominator[rows], minlength=n)
        self.requests.update(np.unique(requests[rows]).tolist())

    def sorted_sums(self, metric: str) -> tuple[Float, Float]:
        """(numerator, denominator) per cluster, clusters in sorted order (the order the bootstrap draws in)."""
        order = np.array([self.index[c] for c in sorted(self.index)], dtype=np.int64)
        n = len(self.index)
        denominator = self.denominator.get(denominator_of(metric))
        return _grown(self.numerator.get(metric), n)[order], _grown(denominator, n)[order]


class ClusterSums:
    """Every scope's `ArmSums` for the two compared arms, the arms seen, and which requests were seen
    (a request's utility is counted once, on its first row in file order)."""

    def __init__(self, control: str, treatment: str) -> None:
        self.arms = (control, treatment)
        self.scopes: dict[Scope, dict[str, ArmSums]] = {}
        self.seen_arms: set[str] = set()
        self.seen_requests: set[str] = set()
        self.metrics: set[str] = set()

    def first_rows(self, requests: npt.NDArray[np.str_]) -> Float:
        """1.0 on the first row of each request not seen in an earlier batch, else 0.0."""
        out = np.zeros(len(requests))
        unique, first = np.unique(requests, return_index=True)
        for value, row in zip(unique.tolist(), first.tolist(), strict=True):
            if value not in self.seen_requests:
                self.seen_requests.add(value)
                out[row] = 1.0
        return out

    def add(self, scope: Scope, arms: npt.NDArray[np.str_], clusters: npt.NDArray[np.str_],
            requests: npt.NDArray[np.str_], parts: Parts, rows: npt.NDArray[np.bool_]) -> None:
        self.metrics.update(m for m in parts if not m.startswith("\0"))
        by_arm = self.scopes.setdefault(scope, {arm: ArmSums() for arm in self.arms})
        for arm in self.arms:
            by_arm[arm].add(clusters, requests, parts, rows & (arms == arm))

    def segments(self) -> dict[str, list[str]]:
        """column -> its values seen, sorted."""
        out: dict[str, list[str]] = {}
        for scope in self.scopes:
            if scope is not None:
                out.setdefault(scope[0], []).append(scope[1])
        return {column: sorted(values) for column, values in out.items()}

    def scope(self, scope: Scope) -> dict[str, ArmSums]:
        return self.scopes.get(scope) or {arm: ArmSums() for arm in self.arms}


def _grown(values: Any, n: int) -> Float:
    """`values` (or nothing) padded with zeros to length n."""
    if values is None:
        return np.zeros(n)
    return np.concatenate([values, np.zeros(n - len(values))]) if len(values) < n else np.asarray(values)
