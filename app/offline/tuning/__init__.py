"""Utility-weight tuning and offline policy simulation on logged candidate sets."""

from app.offline.tuning.constrained import ConstrainedTuner, holdout_split
from app.offline.tuning.logs import CandidateLog, LogError, read_candidate_log
from app.offline.tuning.ndcg import mean_ndcg, ndcg
from app.offline.tuning.objectives import TaskMatrix
from app.offline.tuning.replay import PolicyReplay, replay_policy
from app.offline.tuning.targeting import NdcgGapTuner, RegretTuner

__all__ = [
    "CandidateLog",
    "ConstrainedTuner",
    "LogError",
    "NdcgGapTuner",
    "PolicyReplay",
    "RegretTuner",
    "TaskMatrix",
    "holdout_split",
    "mean_ndcg",
    "ndcg",
    "read_candidate_log",
    "replay_policy",
]
