"""Apply a calibration file offline with the service's own `CalibrationSet` (identical outputs).

Segment values reach the service as vocabulary codes (1 + position in the model's vocabulary, 0 for
an unknown value). Offline, the vocabulary comes from the model manifest when one is given;
without one it is the sorted set of values that have a correction in the file, which gives the same
outputs: a value without a correction keeps the global calibration whether it is in the vocabulary
or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import CalibrationFile
from app.artifacts.manifest import ModelManifest
from app.offline.calibration.source import PredictionFile, encode_column
from app.offline.progress import progress_bar
from app.serving.calibration import CalibrationSet

__all__ = ["OfflineCalibration", "apply_predictions", "segment_vocabularies"]


def segment_vocabularies(calibration: CalibrationFile, manifest: ModelManifest | None = None) -> dict[str, list[str]]:
    """Vocabulary per segment feature used by the file: the manifest's, or the file's table keys."""
    features = sorted({s.feature for t in calibration.tasks.values() for s in t.segments})
    if manifest is not None:
        known = {f.name: f.vocabulary for f in manifest.features.categorical}
        return {f: list(known[f]) for f in features if f in known}
    return {f: sorted({v for t in calibration.tasks.values() for s in t.segments if s.feature == f
                       for v in s.values}) for f in features}


class OfflineCalibration:
    """A calibration file compiled for offline use: tasks and segment features in a fixed column order."""

    def __init__(
        self, calibration: CalibrationFile, tasks: Sequence[str], vocabularies: Mapping[str, Sequence[str]]
    ) -> None:
        self.tasks = list(tasks)
        self.features = list(vocabularies)
        self._index = {f: {v: i + 1 for i, v in enumerate(vocabularies[f])} for f in self.features}
        self._set = CalibrationSet.for_vocabularies(
            calibration, self.tasks, [(f, list(vocabularies[f])) for f in self.features]
        )

    def codes(self, feature: str, dictionary: Sequence[str]) -> npt.NDArray[np.int64]:
        """Vocabulary code of each dictionary entry ([len(dictionary)]; 0 = unknown)."""
        index = self._index[feature]
        return np.array([index.get(v, 0) for v in dictionary], dtype=np.int64)

    def apply(self, logits: npt.NDArray[np.float64], categorical: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """logits [R, T] in `tasks` order, categorical codes [R, F] in `features` order -> p [R, T]."""
        return self._set.apply(logits, categorical)


def apply_predictions(
    calibration: CalibrationFile, source: PredictionFile, out: Path, *, manifest: ModelManifest | None = None,
    show_progress: bool = True,
) -> int:
    """Write `source` with a calibrated `p_<task>` column per task of the file to `out` (.parquet/.csv).

    A raw `p_<task>` input column is kept as `raw_p_<task>`. Rows whose raw prediction is missing
    get a missing (NaN) calibrated one. Returns the number of rows written.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    tasks = source.tasks(need_labels=False, only=list(calibration.tasks))
    vocabularies = segment_vocabularies(calibration, manifest)
    source.require(list(vocabularies), "segment")
    applier = OfflineCalibration(calibration, [t.task for t in tasks], vocabularies)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    rows = 0
    with progress_bar(show_progress) as bar:
        job = bar.add_task(f"calibrating {source.path.name}", total=source.rows)
        for batch in source.batches(source.columns):
            logits = np.stack([source.raw_logits(batch, t, rows) for t in tasks], axis=1)
            categorical = np.zeros((batch.num_rows, len(applier.features)), dtype=np.int64)
            for j, feature in enumerate(applier.features):
                codes, dictionary = encode_column(batch, feature)
                categorical[:, j] = applier.codes(feature, dictionary)[codes]
            p = applier.apply(logits, categorical)
            table = pa.Table.from_batches([batch])
            for t, columns in enumerate(tasks):
                name = f"p_{columns.task}"
                if name in table.column_names:
                    i = table.column_names.index(name)
                    names = table.column_names
                    table = table.rename_columns([f"raw_{c}" if k == i else c for k, c in enumerate(names)])
                table = table.append_column(name, pa.array(p[:, t], type=pa.float64()))
            if writer is None:
                if out.suffix.lower() == ".csv":
                    writer = pacsv.CSVWriter(out, table.schema)
                else:
                    writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            rows += batch.num_rows
            bar.advance(job, batch.num_rows)
    if writer is not None:
        writer.close()
    return rows
