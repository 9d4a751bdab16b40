"""`simulate --model BUNDLE`: rescore the logged features with another model bundle and compare it with
what was served.

The joined log holds the features exactly as the served model saw them (after the request-context and
manifest-default fallback; `fusionrank logs join` spreads them into one column per feature). They are
encoded with the serving encoder of the other bundle, run through its ONNX graph with the serving runner
and calibrated with one of its calibration files: the predictions the service would have computed had
that bundle served the same requests. `rescored_log` returns the log with those predictions in place of
the logged ones, so the policies replay on it unchanged; `compare_predictions` and `compare_rankings` say
how far the new model moves predictions (against the observed labels too) and slates.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.loading import check_calibration_for, load_calibration, load_manifest
from app.errors import ArtifactError
from app.offline.ope.slates import LoggedSlates
from app.offline.tuning.logs import CandidateLog, LogError
from app.serving.calibration import CalibrationSet
from app.serving.columns import CandidateColumns
from app.serving.features import FeatureEncoder
from app.serving.model_runner import ModelRunner

__all__ = ["RescoredModel", "compare_predictions", "compare_rankings", "rescored_log"]

_BATCH = 8192  # rows per model call


@dataclasses.dataclass(frozen=True)
class RescoredModel:
    label: str  # "<model>/<version> calibration <version>"
    log: CandidateLog  # the log with the bundle's calibrated predictions


def rescored_log(log: CandidateLog, bundle: Path, calibration: str | None) -> RescoredModel:
    """The log with p_<task> replaced by the bundle's calibrated predictions on the logged features."""
    manifest = load_manifest(bundle)
    versions = sorted(p.stem for p in (bundle / "calibration").glob("*.json"))
    chosen = calibration or (versions[-1] if versions else None)
    if chosen is None or chosen not in versions:
        raise ArtifactError(bundle / "calibration", "--calibration", f"calibration {chosen!r} is not in the bundle",
                            f"name one of {versions} (fit one with `fusionrank calibrate fit`)")
    path = bundle / "calibration" / f"{chosen}.json"
    calibration_file = load_calibration(path)
    check_calibration_for(calibration_file, manifest, path)
    calibrated = CalibrationSet(calibration_file, manifest)
    tasks = manifest.task_names()
    missing_tasks = [t for t in log.tasks if t not in tasks]
    if missing_tasks:
        raise LogError(log.path, f"p_{missing_tasks[0]}", f"the bundle {manifest.name}/{manifest.version} does not"
                       f" predict task {missing_tasks[0]!r}", "replay a bundle that predicts every task of the log")
    names = [f.name for f in manifest.features.numeric] + [f.name for f in manifest.features.categorical]
    absent = [name for name in names if name not in log.columns]
    if absent:
        raise LogError(log.path, absent[0], "the bundle's feature is not a column of the joined log",
                       "log the features (`FUSIONRANK_SERVED_LOG_FEATURES`) and join with them; a bundle can only"
                       " be replayed on the features it reads")
    encoder = FeatureEncoder(manifest.features)
    runner = ModelRunner(bundle / "model.onnx", manifest)
    categorical = {f.name for f in manifest.features.categorical}
    rows = int(log.mask.sum())
    flat = np.empty((rows, len(tasks)))
    for start in range(0, rows, _BATCH):
        stop = min(rows, start + _BATCH)
        columns: dict[str, Any] = {}
        for name in names:
            values = log.columns[name][start:stop]
            columns[name] = ([None if v is None else str(v) for v in values.tolist()] if name in categorical
                             else np.asarray(values, dtype=np.float64))
        encoded = encoder.encode(CandidateColumns(stop - start, columns), {})
        logits = runner.run(encoded.numeric, encoded.categorical)
        flat[start:stop] = calibrated.apply(logits, encoded.categorical)
    predictions = np.zeros_like(log.predictions)
    predictions[log.mask] = flat[:, [tasks.index(t) for t in log.tasks]]
    label = f"{manifest.name}/{manifest.version} calibration {chosen}"
    return RescoredModel(label, dataclasses.replace(log, predictions=predictions))


def compare_predictions(served: CandidateLog, replayed: CandidateLog) -> dict[str, dict[str, float]]:
    """Per task: mean prediction served and replayed, their mean absolute difference, and on the rows with an
    observed label, the label mean and each model's calibration ratio (sum of p / sum of labels)."""
    out = {}
    before, after = served.predictions[served.mask], replayed.predictions[replayed.mask]
    labels = served.labels[served.mask]
    for t, task in enumerate(served.tasks):
        seen = ~np.isnan(labels[:, t])
        positives = float(labels[seen, t].sum())
        out[task] = {
            "served_mean": float(before[:, t].mean()), "replayed_mean": float(after[:, t].mean()),
            "mean_abs_diff": float(np.abs(after[:, t] - before[:, t]).mean()),
            "labelled_rows": int(seen.sum()),
            "label_mean": float(labels[seen, t].mean()) if seen.any() else float("nan"),
            "served_ratio": float(before[seen, t].sum() / positives) if positives else float("nan"),
            "replayed_ratio": float(after[seen, t].sum() / positives) if positives else float("nan"),
        }
    return out


def compare_rankings(served: LoggedSlates, replayed: npt.NDArray[np.intp], k: int) -> dict[str, float]:
    """The replayed slates [G, >=k] (flat rows, -1 past the end) against the served ones: mean share of the
    served top k the replay keeps in its top k, mean |position change| of the kept candidates, and the share
    of requests whose first candidate is the same."""
    a = served.rows[:, :k]
    b = np.full_like(a, -1)
    width = min(k, replayed.shape[1])
    b[:, :width] = replayed[:, :width]
    overlaps: list[float] = []
    shifts: list[float] = []
    for left, right in zip(a.tolist(), b.tolist(), strict=True):
        shown = [r for r in left if r >= 0]
        if not shown:
            continue
        where = {r: i for i, r in enumerate(right) if r >= 0}
        kept = [(i, where[r]) for i, r in enumerate(shown) if r in where]
        overlaps.append(len(kept) / len(shown))
        shifts.extend(abs(i - j) for i, j in kept)
    same_first = float(np.mean((a[:, 0] == b[:, 0]) & (a[:, 0] >= 0))) if len(a) else float("nan")
    return {"topk_overlap": float(np.mean(overlaps)) if overlaps else float("nan"),
            "mean_rank_shift": float(np.mean(shifts)) if shifts else float("nan"), "same_first": same_first}
