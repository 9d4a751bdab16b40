"""Prometheus multiprocess mode: one scrape of `fusionrank serve --workers N` reports every worker.

`fusionrank serve --workers N` (N > 1) points PROMETHEUS_MULTIPROC_DIR at a directory of its own
before the workers start (app/cli/serve.py); prometheus_client then keeps every metric value in
memory-mapped files there, one set per process, and `/metrics` merges them with
`MultiProcessCollector`. Counters and histograms are summed over every process that ever ran
(dead workers included: their counts happened); each gauge has a multiprocess mode chosen where it
is declared (app/monitoring/metrics.py, docs/scaling.md "Several workers per replica"). With one
worker the variable is unset and nothing here changes what a scrape does.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["MULTIPROC_ENV", "ServedPredictionFiles", "clear_gauge", "exposition", "multiprocess_dir", "prepare_dir",
           "retire_process"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The directory of the multiprocess files when this process runs in multiprocess mode, else None."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_dir(path: Path) -> None:
    """Create `path` and remove the value files a previous start left there (their counts are not this start's)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def exposition(registry: CollectorRegistry) -> bytes:
    """The text a scrape answers: every worker's merged values in multiprocess mode, else `registry`'s."""
    if multiprocess_dir() is None:
        return generate_latest(registry)
    merged = CollectorRegistry()  # per scrape, as prometheus_client documents: the files are read each time
    MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return generate_latest(merged)


def retire_process(path: Path, pid: int) -> None:
    """Drop a finished worker's `live*` gauges (its counters stay: what it counted happened)."""
    if path.is_dir():
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def clear_gauge(gauge: Gauge) -> None:
    """Withdraw every series of a labelled gauge before it is set again.

    A value file cannot forget a series, so in multiprocess mode each one is first set to 0; with a
    `live*max` / `live*sum` mode a series this worker stopped serving then reads 0 unless another
    worker still sets it.
    """
    if multiprocess_dir() is None:
        gauge.clear()
        return
    for values in list(gauge._metrics):
        gauge.labels(*values).set(0)
    with warnings.catch_warnings():  # "clearing labels has not been implemented": handled just above
        warnings.simplefilter("ignore", UserWarning)
        gauge.clear()


class ServedPredictionFiles:
    """The served-prediction histograms and PSI gauges of `ServedPredictions`, kept in the multiprocess files.

    ServedPredictions is a custom collector (one histogram per calibration scheme, each with its own
    bucket edges), which MultiProcessCollector cannot see; this mirrors its counts into prometheus_client
    metrics, so a scrape sums the histograms of every worker and reports the largest live PSI.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self._labels = list(labels)
        self._histograms: dict[tuple[str, ...], Histogram] = {}
        self._psi = Gauge(
            "fusionrank_prediction_psi",
            "PSI of a worker's recent served predictions against the calibration reference (max over live workers)",
            self._labels, multiprocess_mode="livemax", registry=None,
        )
        self._sample = Gauge(
            "fusionrank_prediction_psi_window_predictions",
            "Predictions in the PSI windows of the live workers (PSI is published from drift_psi_min_predictions)",
            self._labels, multiprocess_mode="livesum", registry=None,
        )

    def prime(self, key: tuple[str, ...], edges: Iterable[float]) -> None:
        """Create a (model, model_version, calibration_version, arm, task) histogram at zero."""
        if key not in self._histograms:
            bounds = [*map(float, edges), math.inf]
            family = Histogram(
                "fusionrank_served_prediction",
                "Calibrated predictions served, by task; buckets are the calibration file's bucket_edges",
                self._labels, buckets=bounds, registry=None,
            )
            self._histograms[key] = family.labels(*key)

    def add(self, key: tuple[str, ...], added: npt.NDArray[np.int64], total: float) -> None:
        """Add one request's bucket counts [B] (B = edges + 1) and prediction sum to a primed histogram."""
        child = self._histograms[key]
        for b in np.flatnonzero(added):
            child._buckets[int(b)].inc(float(added[b]))
        child._sum.inc(total)

    def publish(self, key: tuple[str, ...], psi: float | None, sample: float) -> None:
        """Set a task's window size, and its PSI once one exists (a series cannot be withdrawn: below the
        minimum a worker that had published one reports 0, which the max over workers ignores)."""
        self._sample.labels(*key).set(sample)
        if psi is not None:
            self._psi.labels(*key).set(psi)
        elif key in self._psi._metrics:
            self._psi.labels(*key).set(0.0)
