"""Counters of observed outcomes (feedback) per task x prediction bucket and per task x segment value.

Only counters, only sums: for each series the event count, the sum of served predictions, the sum
of labels and the log-loss sum (nats). Ratios of their `increase()` over any window, summed over
any number of replicas, give the calibration ratio, ECE, Field-RCE and normalised entropy
(`deploy/prometheus/rules/`, README "Monitoring and deployment"). Nothing here keeps state of its
own, so a replica can restart or scale out without losing or double-counting an aggregate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter

from app.monitoring.scheme import DriftScheme, bucket_names

__all__ = ["ARMS", "FeedbackCounters", "log_loss"]

_EPS = 1e-15
_VERSIONS = ["model", "model_version", "calibration_version"]
ARMS = ("stable", "canary")  # the `arm` label: which arm of a canary served the prediction


def log_loss(predictions: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per-event log-loss in nats: p [N], y [N] in {0, 1} -> [N]; p clipped to [1e-15, 1 - 1e-15]."""
    p = np.clip(predictions, _EPS, 1.0 - _EPS)
    return np.asarray(-(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))


class _Sums:
    """The four counters of one breakdown (bucket or segment)."""

    def __init__(self, prefix: str, what: str, labels: list[str], registry: CollectorRegistry) -> None:
        names = [*_VERSIONS, "arm", "task", *labels]
        self.events = Counter(f"{prefix}_events", f"Feedback events {what}", names, registry=registry)
        self.predictions = Counter(
            f"{prefix}_prediction_sum", f"Sum of served calibrated predictions of feedback events {what}", names,
            registry=registry,
        )
        self.labels = Counter(f"{prefix}_label_sum", f"Sum of labels (positives) of feedback events {what}", names,
                              registry=registry)
        self.log_loss = Counter(f"{prefix}_logloss_sum", f"Log-loss sum (nats) of feedback events {what}", names,
                                registry=registry)

    def prime(self, label_values: Sequence[str]) -> None:
        # A series that first appears with a non-zero value loses that first increment in increase().
        for counter in (self.events, self.predictions, self.labels, self.log_loss):
            counter.labels(*label_values)

    def add(self, label_values: Sequence[str], count: float, predictions: float, labels: float, loss: float) -> None:
        self.events.labels(*label_values).inc(count)
        self.predictions.labels(*label_values).inc(predictions)
        self.labels.labels(*label_values).inc(labels)
        self.log_loss.labels(*label_values).inc(loss)


class FeedbackCounters:
    """`fusionrank_feedback_*` (by bucket) and `fusionrank_feedback_segment_*` (by field and value)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.by_bucket = _Sums("fusionrank_feedback", "by task and prediction bucket", ["bucket"], registry)
        self.by_segment = _Sums(
            "fusionrank_feedback_segment", "by task, segment field and value", ["field", "value"], registry
        )
        self.rejected = Counter(
            "fusionrank_feedback_rejected", "Feedback events rejected, by the event field at fault", ["field"],
            registry=registry,
        )

    def prime(self, scheme: DriftScheme) -> None:
        """Create every series of a scheme at 0, so that the first batch is not lost to increase()."""
        versions = list(scheme.versions.values())
        for arm in ARMS:
            for task in scheme.tasks:
                for bucket in bucket_names(scheme.edges[task]):
                    self.by_bucket.prime([*versions, arm, task, bucket])
                for field, value in scheme.segment_labels():
                    self.by_segment.prime([*versions, arm, task, field, value])

    def record(
        self,
        scheme: DriftScheme,
        task: str,
        predictions: npt.NDArray[np.float64],
        labels: npt.NDArray[np.float64],
        segments: Mapping[str, Sequence[str | None]],
        arm: str = "stable",
    ) -> None:
        """Add N events of one task served by one arm: p [N], y [N]; segments: field -> N values (None: not sent)."""
        versions = [*scheme.versions.values(), arm]
        loss = log_loss(predictions, labels)
        buckets = scheme.bucket_of(task, predictions)
        names = bucket_names(scheme.edges[task])
        sums = _grouped(buckets, len(names), predictions, labels, loss)
        for b in np.flatnonzero(sums[0]):
            self.by_bucket.add([*versions, task, names[b]], *(float(s[b]) for s in sums))
        for field, raw in segments.items():
            present = np.fromiter((v is not None for v in raw), dtype=bool, count=len(raw))
            if not present.any():
                continue
            values = [scheme.segment_value(field, v) for v in raw if v is not None]
            keys, codes = np.unique(np.asarray(values, dtype=object), return_inverse=True)
            sums = _grouped(codes, len(keys), predictions[present], labels[present], loss[present])
            for k, value in enumerate(keys):
                self.by_segment.add([*versions, task, field, str(value)], *(float(s[k]) for s in sums))


def _grouped(
    groups: npt.NDArray[np.intp], size: int, *columns: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], ...]:
    """Per group: (count, sum of each column), each [size]."""
    count = np.bincount(groups, minlength=size).astype(np.float64)
    sums = (np.asarray(np.bincount(groups, weights=c, minlength=size), dtype=np.float64) for c in columns)
    return (count, *sums)
