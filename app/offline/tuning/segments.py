"""The declared segment of `tune constrained`: a log column within each of whose values every bound must hold,
not only overall.

A bound that holds on average can fail for one kind of request (new users shown more hidden items while
power users pull the mean down) or one kind of item. A request-level column (one value per request, e.g. the
context field `user_segment`) bounds, per value, the mean over its requests of the mean p in their top k; a
candidate attribute (e.g. `category`) bounds, per value, the mean p of the top-k items holding it, pooled over
requests. Each value keeps the same held-out room as overall and is reported on the held-out requests. The
number of values is bounded (each one adds a constraint per bound): at most `max_segments`, never more
than `MAX_SEGMENTS`, and each value needs `min_groups` requests in both the training and held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.offline.tuning.logs import CandidateLog, LogError

__all__ = ["MAX_SEGMENTS", "MISSING", "ItemSegmentMeans", "SegmentMeans", "SegmentOptions", "Segments", "read_segments"]

MAX_SEGMENTS = 100
MISSING = "(missing)"  # the value of a request whose segment column is empty

Float = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class SegmentOptions:
    """What `tune constrained --segment COLUMN` (enforce) or `--report-segment COLUMN` (report only) asks."""

    column: str
    enforce: bool = True
    max_segments: int = 20
    min_groups: int = 5

    @classmethod
    def from_cli(cls, segment: str | None, report_segment: str | None, max_segments: int,
                 min_groups: int) -> SegmentOptions | None:
        if segment is not None and report_segment is not None:
            raise ValueError("give --segment COLUMN (bounds hold within each value) or --report-segment COLUMN"
                             " (only reported per value), not both")
        if not 1 <= max_segments <= MAX_SEGMENTS:
            raise ValueError(f"--max-segments {max_segments}: give 1 to {MAX_SEGMENTS}")
        if min_groups < 2:
            raise ValueError(f"--segment-min-groups {min_groups}: give at least 2 (a standard error needs 2 groups)")
        column = segment if segment is not None else report_segment
        return cls(column, segment is not None, max_segments, min_groups) if column is not None else None

    def tuner_parameters(self) -> dict[str, Any]:
        """The `ConstrainedTuner` keyword arguments."""
        return {"segment": self.column, "enforce_segments": self.enforce, "max_segments": self.max_segments,
                "segment_min_groups": self.min_groups}


@dataclass(frozen=True)
class Segments:
    """The values of the segment column (`labels`, sorted) and whether it is a candidate attribute."""

    column: str
    labels: tuple[str, ...]
    per_candidate: bool  # the value differs between the candidates of a request (e.g. category)

    def codes(self, part: CandidateLog) -> IntArray:
        """The value of each group [G] (a request-level column) or of each candidate [G, N] (-1 in the padding)."""
        rows = np.searchsorted(np.array(self.labels), _labels(part.columns[self.column])).astype(np.intp)
        if not self.per_candidate:
            return rows[part.starts]
        return np.where(part.row >= 0, rows[np.maximum(part.row, 0)], -1).astype(np.intp)

    def counts(self, part: CandidateLog) -> IntArray:
        """[S] requests of `part` that hold each value (for a candidate attribute: among their candidates)."""
        codes = self.codes(part)
        if not self.per_candidate:
            return np.bincount(codes, minlength=len(self.labels)).astype(np.intp)
        return np.array([int((codes == s).any(axis=1).sum()) for s in range(len(self.labels))], dtype=np.intp)

    def means(self, part: CandidateLog) -> SegmentMeans | ItemSegmentMeans:
        """The per-value top-k means of `part` (`TopKEvaluator` calls it once per split)."""
        codes, n = self.codes(part), len(self.labels)
        return ItemSegmentMeans(codes, n) if self.per_candidate else SegmentMeans(codes, n)

    def check_sizes(self, train: CandidateLog, held: CandidateLog, min_groups: int) -> None:
        """Every value has `min_groups` training and held-out requests, or a ValueError names the smallest."""
        n_train, n_held = self.counts(train), self.counts(held)
        small = np.flatnonzero((n_train < min_groups) | (n_held < min_groups))
        if small.size:
            s = int(small[np.argmin(np.minimum(n_train, n_held)[small])])
            raise ValueError(
                f"--segment {self.column}: value {self.labels[s]!r} has {n_train[s]} training and {n_held[s]}"
                f" held-out requests, fewer than --segment-min-groups {min_groups} ({small.size} value(s) in all):"
                " log more requests, merge rare values into one in the log, or lower --segment-min-groups"
            )


def _labels(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    """A string per row; empty values (None, NaN) are `MISSING`; whole floats print as integers."""
    if values.dtype.kind == "f":
        return np.array([MISSING if v != v else (f"{v:.0f}" if v == int(v) else f"{v:g}") for v in values.tolist()])
    if values.dtype.kind in "iub":
        return values.astype(str)
    return np.array([MISSING if v is None or v != v else str(v) for v in values.tolist()])


def read_segments(log: CandidateLog, column: str, *, max_segments: int) -> Segments:
    """The values of `column` in `log`; a LogError names a missing column or one with too many values."""
    if column not in log.columns:
        found = sorted(n for n in log.columns if n not in ("candidate_id",))
        raise LogError(log.path, column, "no such column in the log",
                       f"name a column of the log for --segment (found {found}): a context field written with every"
                       " candidate (e.g. user_segment) or a candidate attribute (e.g. category)")
    rows = _labels(log.columns[column])
    group_of_row = np.repeat(np.arange(log.n_groups), log.sizes)
    per_candidate = bool((rows != rows[log.starts][group_of_row]).any())
    labels = np.unique(rows)
    limit = min(max_segments, MAX_SEGMENTS)
    if len(labels) > limit:
        raise LogError(log.path, column, f"has {len(labels)} values, more than the {limit} allowed"
                                         f" (--max-segments, at most {MAX_SEGMENTS})",
                       "bucket the column into fewer values in the log, or raise --max-segments: each value adds"
                       " one constraint per bound")
    return Segments(column, tuple(map(str, labels)), per_candidate)


class SegmentMeans:
    """A request-level segment: per value, the mean and standard error over its requests of their top-k means."""

    def __init__(self, codes: IntArray, n_segments: int) -> None:
        self.onehot = (codes[None, :] == np.arange(n_segments)[:, None]).astype(np.float64)  # [S, G]
        self.counts = self.onehot.sum(axis=1)  # [S]

    def __call__(self, per_group: Float, index: IntArray, valid: npt.NDArray[np.bool_],
                 picked: Float) -> tuple[Float, Float]:
        """per_group [G, J] -> (means [S, J], standard errors [S, J]); a value's groups only."""
        n = np.maximum(self.counts, 1.0)[:, None]
        means = self.onehot @ per_group / n
        squares = self.onehot @ per_group**2 / n
        variance = np.maximum(squares - means**2, 0.0) * n / np.maximum(n - 1.0, 1.0)  # ddof = 1
        return means, np.sqrt(variance / n)


class ItemSegmentMeans:
    """A candidate-attribute segment: per value, the mean prediction of the top-k items holding it, pooled over
    requests (sum over requests / items), with the ratio estimator's standard error over requests."""

    def __init__(self, codes: IntArray, n_segments: int) -> None:
        self.codes, self.n = codes, n_segments  # [G, N]

    def __call__(self, per_group: Float, index: IntArray, valid: npt.NDArray[np.bool_],
                 picked: Float) -> tuple[Float, Float]:
        """index, valid [G, k] (the top k), picked [G, k, J] (their predictions, 0 where not valid)."""
        held = np.where(valid, np.take_along_axis(self.codes, index, axis=1), -1)
        onehot = (held[:, :, None] == np.arange(self.n)).astype(np.float64)  # [G, k, S]
        sums = np.einsum("gks,gkj->gsj", onehot, picked)  # [G, S, J]
        items = onehot.sum(axis=1)  # [G, S]
        total = np.maximum(items.sum(axis=0), 1.0)[:, None]  # [S, 1]
        means = sums.sum(axis=0) / total
        residual = sums - means[None] * items[:, :, None]  # linearised ratio estimator
        g = len(held)
        variance = (residual**2).sum(axis=0) / total**2 * (g / max(g - 1, 1))
        return means, np.sqrt(variance)
