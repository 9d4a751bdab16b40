"""The canary readout: compare the arms of a rollout from a joined log and say ship, hold or abort."""

from app.offline.rollout.readout import ReadoutSettings, read_rollout, rollout_readout
from app.offline.rollout.thresholds import Rule, Thresholds, merged, parse_rule, read_thresholds

__all__ = [
    "ReadoutSettings",
    "Rule",
    "Thresholds",
    "merged",
    "parse_rule",
    "read_rollout",
    "read_thresholds",
    "rollout_readout",
]
