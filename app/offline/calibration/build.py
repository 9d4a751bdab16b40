"""`calibrate fit` end to end: predictions file -> statistics -> per-task fit -> a calibration file.

Held-out metrics (`metrics.before` / `metrics.after` of every task) are the `summary` set plus
`field_rce.<feature>` for each segment feature, computed on the held-out rows (see
`app.offline.calibration.collect` for the split) with the raw sigmoid(logit) before and the file's
own apply (the service's code) after. A held-out table with fewer than `min_held_out_positives`
positives for a task is refused (its metrics would be noise); `--holdout 0` fits on every row and
writes no held-out metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import BeforeAfter, CalibrationFile, FittedFor, TaskCalibration
from app.artifacts.manifest import ModelManifest
from app.errors import ArtifactError
from app.offline.calibration.apply import OfflineCalibration
from app.offline.calibration.binned_metrics import cell_value_ids, cell_vocabulary_codes
from app.offline.calibration.collect import Collected, collect
from app.offline.calibration.fit import FitConfig, fit_task
from app.offline.calibration.noise import field_rce_noise, with_intervals
from app.offline.calibration.source import MISSING, PredictionFile, TaskColumns
from app.offline.calibration.stats import CalibrationStats
from app.offline.metrics import field_rce, summary
from app.serving.calibration import sigmoid

MIN_HELD_OUT_POSITIVES = 30  # below this a held-out ratio's 95 % interval is wider than +-36 %

__all__ = ["MIN_HELD_OUT_POSITIVES", "FitOutcome", "check_segments", "fit_collected", "fit_predictions",
           "fit_statistics", "held_out_metrics"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FitOutcome:
    calibration: CalibrationFile
    rows: int
    held_out_rows: int
    split_key: str | None


def held_out_metrics(p: Array, y: Array, segment_codes: Mapping[str, npt.NDArray[np.int64]]) -> dict[str, float]:
    """`summary` with the ratio's 95 % interval, plus Field-RCE and its noise floor per segment feature.

    segment_codes: feature -> [R] value codes. Keys: calibration_ratio_low / _high,
    field_rce.<feature> and field_rce_noise.<feature> (`app.offline.calibration.noise`).
    """
    out = with_intervals(summary(p, y))
    for feature, codes in segment_codes.items():
        out[f"field_rce.{feature}"] = field_rce(p, y, codes)
        _, inverse = np.unique(codes, return_inverse=True)
        rows, positives = np.bincount(inverse), np.bincount(inverse, weights=y)
        cells = list(zip(rows.astype(float).tolist(), positives.tolist(), strict=True))
        out[f"field_rce_noise.{feature}"] = field_rce_noise(cells, float(np.sum(y)))
    return out


def fit_predictions(
    source: PredictionFile, config: FitConfig, *, version: str, manifest: ModelManifest | None = None,
    holdout_fraction: float = 0.2, holdout_key: str | None = "group_id", show_progress: bool = True,
    created_at: datetime | None = None, holdout_split: str | None = None,
    min_held_out_positives: int = MIN_HELD_OUT_POSITIVES,
) -> FitOutcome:
    """Fit every task of `source` (with `manifest`: exactly the model's tasks) into one calibration file.

    holdout_split: hold out the rows whose `split` column has this value (instead of a hashed fraction).
    created_at: the file's timestamp (default now; the demo passes its log's end to be reproducible).
    """
    check_segments(config, manifest, source.path)
    tasks = source.tasks(need_labels=True, only=manifest.task_names() if manifest else None)
    collected = collect(source, tasks, config.segments, holdout_fraction=holdout_fraction, key=holdout_key,
                        show_progress=show_progress, holdout_split=holdout_split)
    return fit_collected(collected, tasks, config, version=version, manifest=manifest, origin=source.path,
                         name=source.path.name, created_at=created_at, min_held_out_positives=min_held_out_positives)


def check_segments(config: FitConfig, manifest: ModelManifest | None, origin: Path | str) -> None:
    """With a model: every --segment must be one of its categorical features."""
    if manifest is None:
        return
    categorical = {f.name for f in manifest.features.categorical}
    for feature in config.segments:
        if feature not in categorical:
            raise ArtifactError(origin, feature, f"--segment {feature} is not a categorical feature of"
                                f" {manifest.name}/{manifest.version}", f"use one of {sorted(categorical)}")


def fit_statistics(
    stats: CalibrationStats, fields: Mapping[str, str], config: FitConfig, *, manifest: ModelManifest | None,
    origin: Path | str,
) -> tuple[dict[str, TaskCalibration], dict[str, list[str]]]:
    """The driver step on summed statistics: (every task's calibration, the segment vocabularies used).

    fields: task -> the column (or model output) holding its raw prediction, in task order; it is the
    field an error names. Segment corrections are limited to the model's vocabularies, or without a
    model to the values seen (null excluded). Metrics are left empty.
    """
    if manifest is not None:
        categorical = {f.name: f.vocabulary for f in manifest.features.categorical}
        vocabularies = {f: list(categorical[f]) for f in config.segments}
    else:
        vocabularies = {f: [v for v in stats.values_of(f) if v != MISSING] for f in config.segments}
    config = FitConfig(method=config.method, segments=config.segments, shrinkage_prior=config.shrinkage_prior,
                       drift_buckets=config.drift_buckets, vocabularies=vocabularies)
    fitted: dict[str, TaskCalibration] = {}
    for task, field in fields.items():
        try:
            fitted[task] = fit_task(stats.per_task[task], stats.cells, stats.segment_features, config)
        except ValueError as exc:
            raise ArtifactError(origin, field, f"cannot fit task {task!r}: {exc}",
                                "check the task's predictions and labels in the fit split") from None
    return fitted, vocabularies


def fit_collected(
    collected: Collected, tasks: Sequence[TaskColumns], config: FitConfig, *, version: str,
    manifest: ModelManifest | None, origin: Path | str, name: str, created_at: datetime | None = None,
    min_held_out_positives: int = MIN_HELD_OUT_POSITIVES,
) -> FitOutcome:
    """The driver step, whatever engine collected the statistics: fit every task, add held-out metrics."""
    if (collected.holdout and collected.held_out_rows == 0) or collected.held_out_rows == collected.rows:
        raise ArtifactError(origin, "--holdout", f"the hold-out split left {collected.held_out_rows} of"
                            f" {collected.rows} rows held out",
                            "use more rows, another --holdout fraction, or --holdout 0 (no held-out metrics)")
    if collected.holdout:
        for task, held in collected.held_out.items():
            positives = int(np.sum(held.y))
            if positives < min_held_out_positives:
                raise ArtifactError(
                    origin, "--holdout",
                    f"task {task!r} has {positives} positives in the {len(held.y)} held-out observed rows, fewer"
                    f" than {min_held_out_positives}: its held-out metrics would be noise",
                    "use --holdout 0 (fit on every row, no held-out metrics), a larger --holdout, or more data"
                    " (or lower --min-holdout-positives)")
    fitted, vocabularies = fit_statistics(collected.stats, {t.task: t.raw for t in tasks}, config,
                                          manifest=manifest, origin=origin)
    created = created_at or datetime.now(UTC).replace(microsecond=0)
    draft = CalibrationFile(
        schema_version=1, version=version, created_at=created, tasks=fitted,
        model=None if manifest is None else FittedFor(name=manifest.name, version=manifest.version,
                                                      sha256=manifest.model_sha256),
        notes=(f"method {config.method}; segments {list(config.segments) or 'none'} (shrinkage pseudo-count"
               f" {config.shrinkage_prior:g}); fitted on {collected.rows - collected.held_out_rows} rows of"
               f" {name}, "
               + (f"metrics on {collected.held_out_rows} held-out rows (split by {collected.key or 'row number'})."
                  if collected.holdout else "no held-out metrics (--holdout 0)."))
    )
    with_metrics = _add_metrics(draft, collected, vocabularies) if collected.holdout else draft
    return FitOutcome(with_metrics, collected.rows, collected.held_out_rows, collected.key)


def _add_metrics(draft: CalibrationFile, collected: Collected, vocabularies: dict[str, list[str]]) -> CalibrationFile:
    stats = collected.stats
    features = stats.segment_features
    # One task at a time: an [R, T] apply of every task would hold T times the held-out rows of one.
    appliers = {task: OfflineCalibration(draft, [task], vocabularies) for task in draft.tasks}
    cell_codes = cell_vocabulary_codes(stats, appliers[next(iter(draft.tasks))])  # the same for every task
    value_ids = cell_value_ids(stats)
    tasks: dict[str, TaskCalibration] = {}
    for task, cal in draft.tasks.items():
        held = collected.held_out[task]
        p_after = appliers[task].apply(held.z[:, None], cell_codes[held.cell])[:, 0]
        segment_codes = {f: value_ids[held.cell, j] for j, f in enumerate(features)}
        metrics = BeforeAfter(
            before=held_out_metrics(sigmoid(held.z), held.y, segment_codes),
            after=held_out_metrics(p_after, held.y, segment_codes),
        )
        tasks[task] = cal.model_copy(update={"metrics": metrics})
    return draft.model_copy(update={"tasks": tasks})
