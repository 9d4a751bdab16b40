"""Sufficient statistics: exact sums, masked rows excluded, shards merge to the whole."""

from __future__ import annotations

import numpy as np
import pytest

from app.offline.calibration import CalibrationStats, FitConfig, LogitGrid, PlattCalibrator, fit_task
from tests.offline.calibration.data import predictions_columns


def _stats(columns: dict[str, np.ndarray], rows: slice) -> CalibrationStats:
    stats = CalibrationStats(tasks=("click",), segment_features=("user_tenure", "item_type"))
    cells = stats.cell_ids({f: columns[f][rows] for f in stats.segment_features}, len(columns["group_id"][rows]))
    stats.add("click", columns["logit_click"][rows], columns["label_click"][rows].astype(float),
              columns["mask_click"][rows].astype(float), cells)
    return stats


def test_sums_are_exact_and_masked_rows_do_not_count() -> None:
    columns = predictions_columns(20_000)
    stats = _stats(columns, slice(None))
    observed = columns["mask_click"] > 0
    click = stats.per_task["click"]
    assert click.weight.sum() == observed.sum()
    assert click.label_sum.sum() == columns["label_click"][observed].sum()
    assert click.logit_sum.sum() == pytest.approx(columns["logit_click"][observed].sum(), rel=1e-12)
    cell = stats.cells.index(("new", "video"))
    rows = observed & (columns["user_tenure"] == "new") & (columns["item_type"] == "video")
    assert click.weight[cell].sum() == rows.sum()
    # a masked row's label and logit may be garbage (NaN): they add nothing
    garbage = {k: v.copy() for k, v in columns.items()}
    garbage["logit_click"] = np.where(observed, garbage["logit_click"], np.nan)
    garbage["label_click"] = np.where(observed, garbage["label_click"], 7)
    other = _stats(garbage, slice(None)).per_task["click"]
    np.testing.assert_array_equal(other.label_sum, click.label_sum)
    np.testing.assert_array_equal(other.logit_sum, click.logit_sum)


def test_shards_merge_to_the_statistics_of_the_whole() -> None:
    columns = predictions_columns(30_000, seed=1)
    whole = _stats(columns, slice(None))
    merged = _stats(columns, slice(17_000, None)).merge(_stats(columns, slice(0, 17_000)))
    assert sorted(merged.cells) == sorted(whole.cells)
    order = [merged.cells.index(c) for c in whole.cells]
    for name in ("weight", "label_sum", "logit_sum"):
        np.testing.assert_allclose(getattr(merged.per_task["click"], name)[order],
                                   getattr(whole.per_task["click"], name), rtol=1e-12, atol=1e-9)
    config = FitConfig(segments=("user_tenure", "item_type"))
    a = fit_task(whole.per_task["click"], whole.cells, whole.segment_features, config)
    b = fit_task(merged.per_task["click"], merged.cells, merged.segment_features, config)
    assert a.calibrator.model_dump() == pytest.approx(b.calibrator.model_dump(), abs=1e-9)  # type: ignore[arg-type]
    for sa, sb in zip(a.segments, b.segments, strict=True):
        for value, params in sa.values.items():
            assert abs(params.a - sb.values[value].a) < 1e-9 and abs(params.b - sb.values[value].b) < 1e-9


def test_platt_on_fine_bins_matches_platt_on_rows() -> None:
    columns = predictions_columns(100_000, seed=2)
    stats = _stats(columns, slice(None))
    observed = columns["mask_click"] > 0
    rows = PlattCalibrator().fit(columns["logit_click"][observed], columns["label_click"][observed].astype(float))
    binned = stats.per_task["click"].pooled()
    bins = PlattCalibrator().fit(binned.z, binned.y, binned.w)
    assert bins.a_ == pytest.approx(rows.a_, abs=1e-4) and bins.b_ == pytest.approx(rows.b_, abs=1e-4)


def test_grid_clamps_extreme_logits_into_the_end_bins() -> None:
    grid = LogitGrid(lo=-4, hi=4, bins=8)
    np.testing.assert_array_equal(grid.index(np.array([-100.0, -4.0, -3.5, 0.0, 3.99, 4.0, 1e9])),
                                  [0, 0, 0, 4, 7, 7, 7])


def test_too_many_segment_cells_are_refused_with_the_features_named() -> None:
    from app.offline.calibration.stats import MAX_CELLS

    stats = CalibrationStats(tasks=("click",), segment_features=("user_id",))
    ids = np.array([f"u{i}" for i in range(MAX_CELLS + 1)])
    with pytest.raises(ValueError, match=r"more than 1024 combinations of the segment features \['user_id'\]"):
        stats.cell_ids({"user_id": ids}, ids.size)
