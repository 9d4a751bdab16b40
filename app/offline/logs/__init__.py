"""Offline side of the served log: join it with outcomes (`fusionrank logs join`), locally or on Spark."""

from app.offline.logs.inputs import LabelWindows, read_outcomes, read_served
from app.offline.logs.join import JoinSummary, join_logs, write_joined

__all__ = ["JoinSummary", "LabelWindows", "join_logs", "read_outcomes", "read_served", "write_joined"]
