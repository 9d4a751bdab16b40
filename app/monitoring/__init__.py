"""Prometheus metrics and drift accounting."""

from app.monitoring.metrics import LATENCY_BUCKETS, ServiceMetrics

__all__ = ["LATENCY_BUCKETS", "ServiceMetrics"]
