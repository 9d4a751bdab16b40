"""Count every `/v1/score` answer: per-stage latency, candidates, the answering triple, served
predictions, filter decisions and the shadow-policy comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.monitoring.metrics import ServiceMetrics
from app.serving.answer import Answer

if TYPE_CHECKING:
    from app.monitoring.served_log import ServedLog

__all__ = ["AnswerMetrics"]


class AnswerMetrics:
    """The `AnswerObserver` of the service: writes each answer into its `ServiceMetrics`, and offers it to
    the served log (when on) without waiting."""

    def __init__(self, metrics: ServiceMetrics, served_log: ServedLog | None = None) -> None:
        self.metrics = metrics
        self.served_log = served_log

    def answered(self, answer: Answer) -> None:
        if self.served_log is not None:
            self.served_log.offer(answer)
        metrics, outcome = self.metrics, answer.outcome
        surface = answer.request.surface
        series_cache = metrics.series
        for name, seconds in outcome.timings.items():
            series_cache.stage(name).observe(seconds)
        candidates = len(answer.request.candidates.ids)
        series = series_cache.of(surface, answer.arm, outcome.binding)
        series.candidates.inc(candidates)
        series.requests.inc()
        series.served_candidates.inc(candidates)
        series.latency.observe(answer.seconds)
        if outcome.ranked.size:
            series.utility.observe(float(outcome.utility[outcome.ranked[0]]))
        # Every scored candidate, before filters, under the arm that served it.
        metrics.served.observe(series.scheme, outcome.probabilities, answer.arm)
        for group in outcome.filtered:
            series.filtered_by(metrics, surface, group.stage, group.rule).inc(len(group.indices))
        if outcome.ranking is not None:
            for shortfall in outcome.ranking.shortfalls:
                metrics.minimum_shortfalls.labels(surface, shortfall.rule).inc()
        shadow = answer.shadow
        if shadow is None:
            return
        labels = (surface, shadow.policy_version)
        if shadow.comparison is None:
            metrics.shadow_errors.labels(*labels).inc()
        else:
            metrics.shadow_scored.labels(*labels).inc()
            metrics.shadow_overlap.labels(*labels).observe(shadow.comparison.overlap)
            if shadow.comparison.mean_rank_shift is not None:
                metrics.shadow_rank_shift.labels(*labels).observe(shadow.comparison.mean_rank_shift)
        series_cache.stage("shadow").observe(shadow.seconds)

    def coded(self, decode_seconds: float, encode_seconds: float) -> None:
        """Time spent reading the body into a request and writing the answer (`app.protocol`)."""
        stages = self.metrics.series.stages
        stages["decode"].observe(decode_seconds)
        stages["encode"].observe(encode_seconds)
