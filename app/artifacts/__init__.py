"""File contracts shared by the offline tools and the service: manifest, calibration, policy."""

from app.artifacts.calibration import (
    CalibrationFile,
    FittedFor,
    HistogramParams,
    IsotonicParams,
    PlattParams,
    ReferenceDistribution,
    SegmentCalibration,
    SegmentParams,
    TaskCalibration,
    TemperatureParams,
)
from app.artifacts.common import sha256_file
from app.artifacts.loading import (
    check_calibration_for,
    check_policy_against,
    load_calibration,
    load_manifest,
    load_policy,
)
from app.artifacts.manifest import (
    OOV_INDEX,
    CategoricalFeature,
    FeatureSchema,
    ModelManifest,
    NumericFeature,
    ParityCheck,
    TaskSpec,
    TrainingWindow,
)
from app.artifacts.policy import Governance, Guardrail, ModelRef, PolicyFile, SlateRules, UtilityTerm

__all__ = [
    "OOV_INDEX",
    "CalibrationFile",
    "CategoricalFeature",
    "FeatureSchema",
    "FittedFor",
    "Governance",
    "Guardrail",
    "HistogramParams",
    "IsotonicParams",
    "ModelManifest",
    "ModelRef",
    "NumericFeature",
    "ParityCheck",
    "PlattParams",
    "PolicyFile",
    "ReferenceDistribution",
    "SegmentCalibration",
    "SegmentParams",
    "SlateRules",
    "TaskCalibration",
    "TaskSpec",
    "TemperatureParams",
    "TrainingWindow",
    "UtilityTerm",
    "check_calibration_for",
    "check_policy_against",
    "load_calibration",
    "load_manifest",
    "load_policy",
    "sha256_file",
]
