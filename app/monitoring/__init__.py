"""Prometheus metrics and calibration-drift accounting (feedback counters, served histograms, PSI)."""

from app.monitoring.catalog import SchemeCatalog, SchemeMiss
from app.monitoring.dedup import RecentEventIds
from app.monitoring.feedback import FeedbackCounters, log_loss
from app.monitoring.metrics import LATENCY_BUCKETS, ServiceMetrics
from app.monitoring.psi import ServedPredictions, population_stability_index, run_psi_updates
from app.monitoring.scheme import OTHER, DriftScheme

__all__ = [
    "LATENCY_BUCKETS",
    "OTHER",
    "DriftScheme",
    "FeedbackCounters",
    "RecentEventIds",
    "SchemeCatalog",
    "SchemeMiss",
    "ServedPredictions",
    "ServiceMetrics",
    "log_loss",
    "population_stability_index",
    "run_psi_updates",
]
