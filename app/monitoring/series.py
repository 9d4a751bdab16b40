"""The prometheus series one `/v1/score` answer writes, resolved once per answering triple.

`Counter.labels(...)` takes a lock, joins and checks the label values and looks the child up: ~3 µs
each, a dozen times per request. The label values of an answer (its surface, arm and versions) only
change when a snapshot is installed, so the children are resolved on a triple's first answer and kept
until the next snapshot (`SeriesCache.clear`, called by `ServiceMetrics.observe_snapshot`). The children
are the same objects `labels()` returns, so what an answer counts is unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.monitoring.scheme import DriftScheme
from app.serving.bundle import PolicyBinding

if TYPE_CHECKING:
    from app.monitoring.metrics import ServiceMetrics

__all__ = ["AnswerSeries", "SeriesCache"]

# Stages every answer times (`ScoreOutcome.timings` and the codec's decode/encode), resolved up front.
_STAGES = ("features", "inference", "calibration", "utility", "decode", "encode")
# Triples kept at most: a snapshot serves a handful (stable and canary per surface, pinned versions).
_MAX_ENTRIES = 256


@dataclass(frozen=True, slots=True)
class AnswerSeries:
    """The children of one (surface, arm, binding): what `AnswerMetrics.answered` increments."""

    binding: PolicyBinding  # kept so that the cache key (its id) cannot be reused while cached
    candidates: Any  # fusionrank_candidates_scored{surface}
    requests: Any  # fusionrank_served_requests{triple}
    served_candidates: Any
    latency: Any
    utility: Any
    scheme: DriftScheme  # the drift scheme of the binding's (manifest, calibration)
    filtered: dict[tuple[str, str], Any]  # (stage, rule) -> fusionrank_candidates_filtered{surface, stage, rule}

    def filtered_by(self, metrics: ServiceMetrics, surface: str, stage: str, rule: str) -> Any:
        """The filtered-candidates child of (stage, rule) on this surface, resolved on first use."""
        child = self.filtered.get((stage, rule))
        if child is None:
            child = self.filtered[(stage, rule)] = metrics.filtered.labels(surface, stage, rule)
        return child


class SeriesCache:
    """(surface, arm, binding) -> `AnswerSeries`, and stage name -> stage-latency child."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, int], AnswerSeries] = {}
        self.stages: dict[str, Any] = {name: metrics.stage_latency.labels(name) for name in _STAGES}

    def stage(self, name: str) -> Any:
        """The stage-latency child of `name` (resolved once, for stages beyond the usual ones too)."""
        child = self.stages.get(name)
        if child is None:
            child = self.stages[name] = self._metrics.stage_latency.labels(name)
        return child

    def of(self, surface: str, arm: str, binding: PolicyBinding) -> AnswerSeries:
        """The series of an answer by `binding` on `surface`'s `arm`."""
        key = (surface, arm, id(binding))
        series = self._series.get(key)
        if series is not None and series.binding is binding:
            return series
        m = self._metrics
        v = binding.versions()
        labels = (surface, arm, v["model_version"], v["calibration_version"], v["policy_version"])
        series = AnswerSeries(
            binding=binding,
            candidates=m.candidates.labels(surface),
            requests=m.served_requests.labels(*labels),
            served_candidates=m.served_candidates.labels(*labels),
            latency=m.served_latency.labels(*labels),
            utility=m.served_utility.labels(*labels),
            scheme=m.schemes.of(binding.bundle.manifest, binding.calibration.file),
            filtered={},
        )
        with self._lock:
            if len(self._series) >= _MAX_ENTRIES:
                self._series.clear()
            self._series[key] = series
        return series

    def clear(self) -> None:
        """Forget every triple (a new snapshot: its bindings are new objects)."""
        with self._lock:
            self._series.clear()
