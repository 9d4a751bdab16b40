"""Streamed metrics and bucket tables equal the in-memory `summary` and `bucket_table` of the same rows."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from app.offline.calibration import StreamedMetrics, bucket_table
from app.offline.metrics import summary
from app.serving.calibration import sigmoid

Array = npt.NDArray[np.float64]


def _rows(n: int, seed: int, *, ties: bool) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.5, 1.2, n)
    if ties:
        z = np.round(z, 1)  # a few dozen distinct values: tie groups straddle bucket edges
    p = sigmoid(z)
    return p, (rng.random(n) < sigmoid(z - 0.4)).astype(np.float64)


def _stream(p: Array, y: Array, buckets: list[int], cuts: list[int], **options: int) -> StreamedMetrics:
    stream = StreamedMetrics(buckets, **options)
    for add in (stream.add, stream.add_again):
        for part_p, part_y in zip(np.split(p, cuts), np.split(y, cuts), strict=True):
            add(part_p, part_y)
    return stream


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("cuts", [[], [1, 777, 4000]])
def test_summary_and_buckets_equal_the_in_memory_ones(ties: bool, cuts: list[int]) -> None:
    p, y = _rows(6007, seed=3, ties=ties)
    stream = _stream(p, y, [7, 10], cuts)
    streamed, expected = stream.summary(), summary(p, y)
    assert streamed["count"] == expected["count"] and streamed["positives"] == expected["positives"]
    assert streamed == pytest.approx(expected, rel=1e-12)
    assert stream.auc_error_bound == 0.0
    for count in (7, 10):
        got, want = stream.buckets(count), bucket_table(p, y, count)
        assert [(b.low, b.high, b.count, b.positives) for b in got] == [(b.low, b.high, b.count, b.positives)
                                                                        for b in want]
        np.testing.assert_allclose([(b.avg_pred, b.avg_label) for b in got], [(b.avg_pred, b.avg_label) for b in want],
                                   rtol=1e-12)


def test_fewer_rows_than_buckets_gives_one_bucket_per_row() -> None:
    p, y = np.array([0.3, 0.1, 0.3, 0.2, 0.9]), np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    stream = _stream(p, y, [7], [2])
    assert [(b.low, b.count, b.positives) for b in stream.buckets(7)] == [
        (0.1, 1, 0.0), (0.2, 1, 1.0), (0.3, 1, 1.0), (0.3, 1, 0.0), (0.9, 1, 1.0)]  # ties in row order


def test_past_the_row_budget_the_auc_is_within_its_stated_bound() -> None:
    p, y = _rows(20_000, seed=4, ties=False)
    stream = _stream(p, y, [10], [9000], exact_auc_rows=100)
    bound = stream.auc_error_bound
    assert 0 < bound < 1e-3
    assert abs(stream.summary()["auc"] - summary(p, y)["auc"]) <= bound
    assert [b.count for b in stream.buckets(10)] == [b.count for b in bucket_table(p, y, 10)]  # still exact


def test_misuse_is_refused() -> None:
    p, y = _rows(100, seed=5, ties=False)
    stream = StreamedMetrics([4])
    stream.add(p, y)
    stream.add_again(p[:50], y[:50])
    with pytest.raises(RuntimeError, match="add_again\\(\\) saw 50 rows, add\\(\\) saw 100"):
        stream.summary()
    with pytest.raises(RuntimeError, match="first pass is over"):
        stream.add(p, y)
    with pytest.raises(ValueError, match="5 buckets were not asked for"):
        stream.buckets(5)


def test_an_empty_stream_has_no_buckets_and_undefined_rates() -> None:
    stream = StreamedMetrics()
    out = stream.summary()
    assert out["count"] == 0 and stream.buckets(10) == [] and stream.auc_error_bound == 0.0
    assert all(np.isnan(out[k]) for k in ("calibration_ratio", "logloss", "brier", "auc"))


@pytest.mark.parametrize("ties", [False, True])
def test_an_engine_that_bins_and_keeps_rows_itself_gives_the_same_metrics(ties: bool) -> None:
    """What `calibrate report --engine spark` feeds: per-bin sums, totals, then only the kept rows, shuffled."""
    p, y = _rows(6007, seed=7, ties=ties)
    engine = StreamedMetrics([7])
    b = engine.bin_of(p)
    bins = np.unique(b)
    low = np.full(bins.size, np.inf)
    high = np.full(bins.size, -np.inf)
    where = np.searchsorted(bins, b)
    np.minimum.at(low, where, p)
    np.maximum.at(high, where, p)
    engine.add_binned(bins, np.bincount(where).astype(float), np.bincount(where, weights=y),
                      np.bincount(where, weights=p), low, high)
    width = np.searchsorted(np.linspace(0.0, 1.0, 11)[1:-1], p, side="left")
    q = np.clip(p, 1e-15, 1 - 1e-15)
    engine.add_totals(np.bincount(width, weights=p, minlength=10), np.bincount(width, weights=y, minlength=10),
                      float(-np.sum(y * np.log(q) + (1 - y) * np.log1p(-q))), float(np.sum((p - y) ** 2)))
    kept = np.flatnonzero(engine.kept_bins()[b])
    shuffled = np.random.default_rng(0).permutation(kept)  # an engine returns rows in any order
    engine.add_kept(p[shuffled], y[shuffled], shuffled.astype(np.int64) * 3 + 5)  # any increasing key
    local = _stream(p, y, [7], [2000])
    assert engine.summary() == pytest.approx(local.summary(), rel=1e-12)
    assert engine.summary()["auc"] == pytest.approx(summary(p, y)["auc"], rel=1e-12)
    assert [(x.low, x.high, x.count, x.positives) for x in engine.buckets(7)] == [
        (x.low, x.high, x.count, x.positives) for x in local.buckets(7)]
    with pytest.raises(ValueError, match="rows of kept_bins"):
        engine.add_kept(p, y, np.arange(p.size))
