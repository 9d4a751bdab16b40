"""The drift-accounting scheme of one (model version, calibration version): buckets and segment allow-lists.

Both the feedback counters and the served-prediction histograms are keyed by what this scheme
says, so their label values are bounded and known in advance: per task, the calibration file's
interior `bucket_edges` (len(edges) + 1 buckets, named "00", "01", ...); per segment field (a
categorical feature of the model), the values the calibration file has segment tables for plus
the model's vocabulary, capped at `max_values`, every other value counted as `__other__`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import CalibrationFile
from app.artifacts.manifest import ModelManifest

__all__ = ["OTHER", "DriftScheme", "bucket_names"]

OTHER = "__other__"


def bucket_names(edges: npt.NDArray[np.float64]) -> tuple[str, ...]:
    """Label values of the len(edges) + 1 buckets: zero-padded indices, so they sort."""
    return tuple(f"{i:02d}" for i in range(len(edges) + 1))


@dataclass(frozen=True, slots=True, eq=False)
class DriftScheme:
    """Buckets, reference distribution and segment allow-lists of one calibration of one model."""

    model: str
    model_version: str
    calibration_version: str
    tasks: tuple[str, ...]  # manifest order
    edges: Mapping[str, npt.NDArray[np.float64]]  # task -> interior edges [E], strictly increasing
    reference: Mapping[str, npt.NDArray[np.float64]]  # task -> fractions [E + 1], sums to 1
    segments: Mapping[str, frozenset[str]]  # segment field -> allowed values (OTHER not included)

    @classmethod
    def build(cls, manifest: ModelManifest, calibration: CalibrationFile, *, max_values: int) -> DriftScheme:
        """Compile the scheme; `max_values` caps the allowed values of each segment field."""
        tasks = tuple(manifest.task_names())
        edges = {t: np.asarray(calibration.tasks[t].bucket_edges, dtype=np.float64) for t in tasks}
        reference = {t: np.asarray(calibration.tasks[t].reference.fractions, dtype=np.float64) for t in tasks}
        segments: dict[str, frozenset[str]] = {}
        for feature in manifest.features.categorical:
            # Values the calibration corrects come first: they are the ones worth watching.
            calibrated = [v for cal in calibration.tasks.values() for s in cal.segments if s.feature == feature.name
                          for v in s.values]
            ordered = list(dict.fromkeys([*calibrated, *feature.vocabulary]))
            segments[feature.name] = frozenset(ordered[:max_values])
        return cls(
            model=manifest.name, model_version=manifest.version, calibration_version=calibration.version,
            tasks=tasks, edges=edges, reference=reference, segments=segments,
        )

    @property
    def versions(self) -> dict[str, str]:
        """The version labels every drift series of this scheme carries."""
        return {
            "model": self.model, "model_version": self.model_version, "calibration_version": self.calibration_version,
        }

    def bucket_of(self, task: str, predictions: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """Bucket index of each prediction: p [N] -> [N] in 0..len(edges); an edge belongs to the bucket above."""
        return np.searchsorted(self.edges[task], predictions, side="right")

    def segment_value(self, field: str, value: str) -> str:
        """The label value a segment value is counted under (itself if allowed, else `__other__`)."""
        return value if value in self.segments[field] else OTHER

    def segment_labels(self) -> Iterator[tuple[str, str]]:
        """Every (field, value) series of the scheme, `__other__` included."""
        for field in sorted(self.segments):
            for value in sorted(self.segments[field]):
                yield field, value
            yield field, OTHER
