"""The hot path: numpy and onnxruntime only (never torch, never app.offline)."""

from app.serving.bundle import ModelBundle, PolicyBinding, ServingSnapshot, SurfaceRoute
from app.serving.calibration import CalibrationSet, calibrated_logit, logit, sigmoid
from app.serving.columns import CandidateColumns
from app.serving.features import EncodedFeatures, FeatureEncoder
from app.serving.model_runner import ModelRunner
from app.serving.policy import CompiledPolicy, EffectivePolicy
from app.serving.scorer import Filtered, ScoreInput, ScoreOutcome, score

__all__ = [
    "CalibrationSet",
    "CandidateColumns",
    "CompiledPolicy",
    "EffectivePolicy",
    "EncodedFeatures",
    "FeatureEncoder",
    "Filtered",
    "ModelBundle",
    "ModelRunner",
    "PolicyBinding",
    "ScoreInput",
    "ScoreOutcome",
    "ServingSnapshot",
    "SurfaceRoute",
    "calibrated_logit",
    "logit",
    "score",
    "sigmoid",
]
