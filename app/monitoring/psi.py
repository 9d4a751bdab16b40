"""Label-free drift: served-prediction histograms per arm and task, and their PSI against the calibration reference.

Scoring adds each calibrated prediction to its task's drift bucket (the calibration file's
`bucket_edges`) with one vectorised `bincount` per task. Two views of those counts are exported:
- `fusionrank_served_prediction` (histogram, `le` = the calibration edges): cumulative since start,
  so any window and any number of replicas can be aggregated in PromQL;
- `fusionrank_prediction_psi` (gauge): PSI of the last `window_slots` ticks of counts against the
  calibration file's `reference.fractions`, recomputed every tick by `run_psi_updates`. It is per
  process and arm (a canary's window holds only the canary's predictions) and absent until the
  window holds `min_predictions` predictions, so that a quiet replica does not alert on noise. With
  several workers (multiprocess mode) both views go through the value files
  (`ServedPredictionFiles`): histograms summed, PSI the largest of the live workers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app.monitoring.feedback import ARMS
from app.monitoring.multiproc import ServedPredictionFiles, multiprocess_dir
from app.monitoring.scheme import DriftScheme

__all__ = ["ServedPredictions", "population_stability_index", "run_psi_updates"]

log = logging.getLogger("fusionrank.drift")

# Floor of a bucket's share: an empty bucket would make PSI infinite (the usual convention).
PSI_FLOOR = 1e-4
# `arm` (stable | canary, two values) as on the feedback counters: a canary's drift is seen apart from the
# stable arm's even when both serve the same calibration; `sum without (arm)` gives the replica's figure.
_VERSION_LABELS = ["model", "model_version", "calibration_version", "arm", "task"]


def population_stability_index(reference: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]) -> float:
    """PSI = sum_b (a_b - e_b) * ln(a_b / e_b); reference [B] fractions, counts [B] observed, shares floored."""
    expected = np.maximum(np.asarray(reference, dtype=np.float64), PSI_FLOOR)
    actual = np.maximum(np.asarray(counts, dtype=np.float64) / max(float(np.sum(counts)), 1.0), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(slots=True)
class _TaskCounts:
    """Counts of one task of one scheme: cumulative for the histogram, per tick for the PSI window."""

    reference: npt.NDArray[np.float64]
    total: npt.NDArray[np.float64]  # [B] since start
    prediction_sum: float = 0.0
    window: deque[npt.NDArray[np.float64]] = field(default_factory=deque)  # [B] per tick, newest last
    psi: float | None = None
    psi_sample: float = 0.0


class ServedPredictions(Collector):
    """Accumulates served predictions; a prometheus collector of their histogram and PSI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schemes: dict[tuple[str, ...], DriftScheme] = {}
        self._counts: dict[tuple[str, ...], _TaskCounts] = {}  # (*versions, arm, task) -> counts
        self._files = ServedPredictionFiles(_VERSION_LABELS) if multiprocess_dir() is not None else None

    def prime(self, scheme: DriftScheme) -> None:
        """Expose a scheme's histograms (at zero, one per arm and task) before its first prediction."""
        key = tuple(scheme.versions.values())
        with self._lock:
            if key in self._schemes:
                return
            self._schemes[key] = scheme
            for arm in ARMS:
                for task in scheme.tasks:
                    size = len(scheme.edges[task]) + 1
                    counts = _TaskCounts(reference=scheme.reference[task], total=np.zeros(size))
                    counts.window.append(np.zeros(size))
                    self._counts[(*key, arm, task)] = counts
                    if self._files is not None:
                        self._files.prime((*key, arm, task), scheme.edges[task])

    def observe(self, scheme: DriftScheme, probabilities: npt.NDArray[np.float64], arm: str = "stable") -> None:
        """Add one request's calibrated predictions, served by `arm` (stable | canary): probabilities [B, T],
        columns in `scheme.tasks` order."""
        self.prime(scheme)
        key = (*scheme.versions.values(), arm)
        with self._lock:
            for t, task in enumerate(scheme.tasks):
                column = probabilities[:, t]
                total = float(column.sum())
                if total != total:  # a NaN prediction (filtered from the answer) would poison the sum for good
                    column = column[~np.isnan(column)]
                    total = float(column.sum())
                counts = self._counts[(*key, task)]
                added = np.bincount(scheme.bucket_of(task, column), minlength=len(counts.total))
                counts.total += added
                counts.window[-1] += added
                counts.prediction_sum += total
                if self._files is not None:
                    self._files.add((*key, task), added, total)

    def tick(self, window_slots: int, min_predictions: int) -> None:
        """Recompute every PSI over the last `window_slots` slots, then open a new slot."""
        with self._lock:
            for key, counts in self._counts.items():
                observed = np.sum(counts.window, axis=0)
                counts.psi_sample = float(observed.sum())
                enough = counts.psi_sample >= min_predictions
                counts.psi = population_stability_index(counts.reference, observed) if enough else None
                if self._files is not None:
                    self._files.publish(key, counts.psi, counts.psi_sample)
                counts.window.append(np.zeros_like(counts.total))
                while len(counts.window) > window_slots:
                    counts.window.popleft()

    def psi(self, *key: str) -> float | None:
        """The last PSI of (model, model_version, calibration_version, arm, task), None below the minimum."""
        with self._lock:
            return self._counts[key].psi

    def collect(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            "fusionrank_served_prediction",
            "Calibrated predictions served, by task; buckets are the calibration file's bucket_edges",
            labels=_VERSION_LABELS,
        )
        psi = GaugeMetricFamily(
            "fusionrank_prediction_psi",
            "PSI of this process's recent served predictions against the calibration reference",
            labels=_VERSION_LABELS,
        )
        sample = GaugeMetricFamily(
            "fusionrank_prediction_psi_window_predictions",
            "Predictions in the PSI window of this process (PSI is published from drift_psi_min_predictions)",
            labels=_VERSION_LABELS,
        )
        with self._lock:
            for key, counts in self._counts.items():
                scheme = self._schemes[key[:3]]
                edges = scheme.edges[key[4]]
                cumulative = np.cumsum(counts.total)
                buckets = [(repr(float(e)), float(c)) for e, c in zip(edges, cumulative[:-1], strict=True)]
                buckets.append(("+Inf", float(cumulative[-1])))
                histogram.add_metric(list(key), buckets, counts.prediction_sum)
                sample.add_metric(list(key), counts.psi_sample)
                if counts.psi is not None:
                    psi.add_metric(list(key), counts.psi)
        yield histogram
        yield psi
        yield sample


async def run_psi_updates(
    served: ServedPredictions, *, interval_seconds: float, window_slots: int, min_predictions: int
) -> None:
    """Tick `served` every `interval_seconds` until cancelled (a lifespan task)."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            served.tick(window_slots, min_predictions)
        except Exception:  # a bug here must not kill the updater for the process's lifetime
            log.exception("PSI update failed")
