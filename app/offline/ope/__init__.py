"""Off-policy evaluation: a candidate policy's value from slates the service logged with propensities."""

from app.offline.ope.estimators import (
    Interval,
    SlateDM,
    SlateDR,
    SlateFeedback,
    SlateIPS,
    SlateSNIPS,
    effective_sample_size,
)
from app.offline.ope.evaluate import OpeSettings, evaluate_policy, ope_markdown, read_joined_log

__all__ = [
    "Interval",
    "OpeSettings",
    "SlateDM",
    "SlateDR",
    "SlateFeedback",
    "SlateIPS",
    "SlateSNIPS",
    "effective_sample_size",
    "evaluate_policy",
    "ope_markdown",
    "read_joined_log",
]
