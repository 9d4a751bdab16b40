"""The metric set of `metrics.summary` and equal-mass bucket tables of a prediction stream, in bounded memory.

Two passes over the same rows in the same order (a predictions file read twice):

1. `add` accumulates every sum (count, positives, Σp, the logloss and Brier terms, the ten
   equal-width buckets of p) and a fine histogram of p: 2^16 bins of equal width in logit(p) on
   [-20, 20] (the end bins take everything beyond), each with its count, positives and Σp;
2. equal-mass buckets are rank ranges of the rows sorted by p, ties in row order (what
   `np.argsort(kind="stable")` and `np.array_split` give `bucket_table` and `ece_equal_mass`). The
   histogram tells which bin holds each bucket's first and last rank; `add_again` keeps only the rows
   of those bins (p, y, row number), which places those ranks exactly.

The AUC ranks pairs in different bins exactly from the histogram. Pairs inside one bin are exact
too when the bin holds one value (a tie counts one half) or one class; the rows of the other bins
("mixed" bins: both classes, several values) are kept in the second pass as well and ranked, as long
as they number at most `exact_auc_rows`. Then every metric and table equals the in-memory one, up
to the rounding of float sums taken in another order. Past that budget (a file of millions of rows
with continuous predictions) mixed bins count their pairs one half, and `auc_error_bound` says by how
much the AUC can be off: half the share of (positive, negative) pairs that share a mixed bin
(about 1e-4 at worst for bins 6e-4 wide in logit; the real error is far smaller, since pairs inside
a bin go either way about equally).
Memory per stream: 5 x 65,536 float64 (2.6 MB) plus the kept rows (32 bytes each): those of
at most two bins per bucket, and up to `exact_auc_rows` more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from app.serving.calibration import sigmoid

__all__ = ["Bucket", "StreamedMetrics", "bucket_table", "equal_mass_ranges"]

Array = npt.NDArray[np.float64]
_BINS = 1 << 16
_LOGIT_RANGE = (-20.0, 20.0)
_EPS = 1e-15  # as app.offline.metrics.logloss
_ECE_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class Bucket:
    low: float
    high: float
    count: int
    avg_pred: float
    avg_label: float
    positives: float


def bucket_table(p: Array, y: Array, buckets: int = 10) -> list[Bucket]:
    """In memory: equal-mass buckets of p (the rows sorted by p, split in sizes differing by at most one)."""
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, buckets):
        if chunk.size:
            out.append(Bucket(float(p[chunk].min()), float(p[chunk].max()), int(chunk.size),
                              float(p[chunk].mean()), float(y[chunk].mean()), float(y[chunk].sum())))
    return out


def equal_mass_ranges(n: int, buckets: int) -> list[tuple[int, int]]:
    """Rank ranges [start, end) of `np.array_split` of n sorted rows in `buckets` parts, empty ones dropped."""
    size, extra = divmod(n, buckets)
    ends = np.cumsum([size + 1] * extra + [size] * (buckets - extra))
    starts = ends - np.array([size + 1] * extra + [size] * (buckets - extra))
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True) if e > s]


class StreamedMetrics:
    """One prediction column of observed rows: `add` every batch, then `add_again` every batch, then read.

    bucket_counts: the bucket tables to be asked for (the ten buckets of the equal-mass ECE are added);
    exact_auc_rows: at most this many rows of mixed bins are kept to make the AUC exact.
    """

    def __init__(self, bucket_counts: Sequence[int] = (), *, exact_auc_rows: int = 1 << 21) -> None:
        self.bucket_counts = sorted({_ECE_BUCKETS, *bucket_counts})
        self.exact_auc_rows = exact_auc_rows
        # Bin b holds edges[b - 1] <= p < edges[b]: equal widths in logit, compared in p.
        self._edges = sigmoid(np.linspace(*_LOGIT_RANGE, _BINS + 1)[1:-1])
        self.count = np.zeros(_BINS)
        self.positives = np.zeros(_BINS)
        self.sum_p = np.zeros(_BINS)
        self._min = np.full(_BINS, np.inf)
        self._max = np.full(_BINS, -np.inf)
        self._width_p = np.zeros(_ECE_BUCKETS)
        self._width_y = np.zeros(_ECE_BUCKETS)
        self._logloss = 0.0
        self._brier = 0.0
        self._kept: npt.NDArray[np.bool_] | None = None  # bins whose rows pass 2 keeps
        self._auc_exact = False
        self._parts: list[tuple[Array, Array, npt.NDArray[np.int64], npt.NDArray[np.intp]]] = []
        self._seen_again = 0
        self._sorted: dict[int, tuple[Array, Array]] | None = None

    def _bin(self, p: Array) -> npt.NDArray[np.intp]:
        """[R] bin of each p, by comparison with the p-space edges: monotone in p by construction."""
        return np.searchsorted(self._edges, p, side="right").astype(np.intp)

    @property
    def n(self) -> int:
        return int(self.count.sum())

    def add(self, p: Array, y: Array) -> None:
        """Pass 1: observed rows' predictions p and 0/1 labels y, both [R]."""
        if self._kept is not None:
            raise RuntimeError("add() after add_again(): the first pass is over")
        b = self._bin(p)
        self.count += np.bincount(b, minlength=_BINS)
        self.positives += np.bincount(b, weights=y, minlength=_BINS)
        self.sum_p += np.bincount(b, weights=p, minlength=_BINS)
        np.minimum.at(self._min, b, p)
        np.maximum.at(self._max, b, p)
        # Equal-width buckets as app.offline.metrics.ece_equal_width: an edge value falls in the lower one.
        w = np.searchsorted(np.linspace(0.0, 1.0, _ECE_BUCKETS + 1)[1:-1], p, side="left")
        self._width_p += np.bincount(w, weights=p, minlength=_ECE_BUCKETS)
        self._width_y += np.bincount(w, weights=y, minlength=_ECE_BUCKETS)
        q = np.clip(p, _EPS, 1 - _EPS)
        self._logloss += float(-np.sum(y * np.log(q) + (1 - y) * np.log1p(-q)))
        self._brier += float(np.sum((p - y) ** 2))

    def add_again(self, p: Array, y: Array) -> None:
        """Pass 2: the same rows, in the same order; keeps those of the bins that hold a bucket edge
        (and of the mixed bins, within the budget)."""
        if self._kept is None:
            self._kept = self._boundary_bins()
        b = self._bin(p)
        keep = self._kept[b]
        rows = np.arange(self._seen_again, self._seen_again + len(p), dtype=np.int64)
        self._seen_again += len(p)
        if keep.any():
            self._parts.append((p[keep], y[keep], rows[keep], b[keep]))

    def _boundary_bins(self) -> npt.NDArray[np.bool_]:
        """The bins holding a bucket's first or last rank, and the mixed bins if they fit the budget."""
        kept = np.zeros(_BINS, dtype=bool)
        cum = np.cumsum(self.count)
        for buckets in self.bucket_counts:
            for start, end in equal_mass_ranges(self.n, buckets):
                kept[np.searchsorted(cum, [start, end - 1], side="right")] = True
        mixed = self._mixed()
        self._auc_exact = float(self.count[mixed].sum()) <= self.exact_auc_rows
        if self._auc_exact:
            kept |= mixed
        return kept

    def _mixed(self) -> npt.NDArray[np.bool_]:
        """Bins whose within-bin pairs the histogram cannot rank: both classes and more than one value."""
        return np.asarray((self.positives > 0) & (self.positives < self.count) & (self._min < self._max))

    def _rows_of_kept_bins(self) -> dict[int, tuple[Array, Array]]:
        """Boundary bin -> its rows' (p, y) sorted by p, ties in row order."""
        if self._sorted is None:
            if self._seen_again != self.n:
                raise RuntimeError(f"add_again() saw {self._seen_again} rows, add() saw {self.n}: pass the same rows")
            if self._parts:
                p, y, row, b = (np.concatenate([part[i] for part in self._parts]) for i in range(4))
            else:
                p, y, row, b = np.empty(0), np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.intp)
            order = np.lexsort((row, p, b))
            p, y, b = p[order], y[order], b[order]
            bounds = np.flatnonzero(np.r_[True, b[1:] != b[:-1], True]) if b.size else np.array([0])
            self._sorted = {int(b[s]): (p[s:e], y[s:e]) for s, e in pairwise(bounds.tolist())}
            self._parts.clear()
        return self._sorted

    def _range(self, start: int, end: int) -> Bucket:
        """The rows of ranks [start, end) in p order."""
        rows = self._rows_of_kept_bins()
        cum = np.cumsum(self.count)
        first, last = (int(i) for i in np.searchsorted(cum, [start, end - 1], side="right"))
        offset_first, offset_last = start - int(cum[first] - self.count[first]), end - int(cum[last] - self.count[last])
        p_first, y_first = rows[first]
        p_last, y_last = rows[last]
        if first == last:
            sum_p = float(p_first[offset_first:offset_last].sum())
            sum_y = float(y_first[offset_first:offset_last].sum())
        else:
            inner = slice(first + 1, last)
            sum_p = float(p_first[offset_first:].sum() + self.sum_p[inner].sum() + p_last[:offset_last].sum())
            sum_y = float(y_first[offset_first:].sum() + self.positives[inner].sum() + y_last[:offset_last].sum())
        n = end - start
        return Bucket(float(p_first[offset_first]), float(p_last[offset_last - 1]), n, sum_p / n, sum_y / n, sum_y)

    def buckets(self, count: int) -> list[Bucket]:
        """The equal-mass bucket table of `bucket_table(p, y, count)`; count must be in `bucket_counts`."""
        if count not in self.bucket_counts:
            raise ValueError(f"{count} buckets were not asked for (asked: {self.bucket_counts})")
        return [self._range(s, e) for s, e in equal_mass_ranges(self.n, count)]

    def summary(self) -> dict[str, float]:
        """`app.offline.metrics.summary` of every row added (the AUC from the histogram, see above)."""
        n, positives = self.n, float(self.positives.sum())
        nan = float("nan")
        logloss = self._logloss / n if n else nan
        base = positives / n if n else 0.0
        entropy = -(base * np.log(base) + (1 - base) * np.log1p(-base)) if 0 < base < 1 else nan
        ece = sum(abs(b.avg_pred - b.avg_label) * b.count for b in self.buckets(_ECE_BUCKETS)) / n if n else 0.0
        return {
            "count": float(n),
            "positives": positives,
            "calibration_ratio": float(self.sum_p.sum()) / positives if positives > 0 else nan,
            "ece": float(ece),
            "ece_equal_width": float(np.sum(np.abs(self._width_p - self._width_y)) / max(n, 1)),
            "logloss": logloss,
            "normalised_entropy": logloss / float(entropy) if 0 < base < 1 else nan,
            "brier": self._brier / n if n else nan,
            "auc": self._auc(),
        }

    @property
    def auc_error_bound(self) -> float:
        """0 when the AUC is exact; else the most it can be off (half the share of pairs in mixed bins)."""
        if self._kept is None:
            if self.n == 0:
                return 0.0
            raise RuntimeError("the AUC is known after the second pass (add_again)")
        positives, negatives = self.positives, self.count - self.positives
        pairs = float(positives.sum()) * float(negatives.sum())
        if self._auc_exact or pairs == 0:
            return 0.0
        mixed = self._mixed()
        return float(0.5 * np.sum(positives[mixed] * negatives[mixed]) / pairs)

    def _auc(self) -> float:
        positives = self.positives
        negatives = self.count - positives
        total_pos, total_neg = float(positives.sum()), float(negatives.sum())
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        below = np.cumsum(negatives) - negatives  # negatives in lower bins: ranked exactly
        within = 0.5 * positives * negatives  # a tie, a one-class bin, or the approximation
        if self.auc_error_bound == 0.0:
            rows = self._rows_of_kept_bins()
            for b in np.flatnonzero(self._mixed()).tolist():
                within[b] = _pairs_in_order(*rows[b])
        return float(np.sum(positives * below + within) / (total_pos * total_neg))


def _pairs_in_order(p: Array, y: Array) -> float:
    """(positive, negative) pairs with the positive above, ties one half; p [R] sorted ascending."""
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    ends = np.r_[starts[1:], len(p)]
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based, ties averaged
    positives = float(y.sum())
    return float(np.sum(ranks * y) - positives * (positives + 1) / 2)
