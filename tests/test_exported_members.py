"""Pin the public names of each package, so that a change to them is a decision, not an accident."""

from __future__ import annotations

import importlib

import pytest

# package -> the names its `__all__` exports. Adding, renaming or removing a public name means
# editing this table in the same change.
PUBLIC: dict[str, set[str]] = {
    "app.api": {
        "FeedbackRequest",
        "FeedbackResponse",
        "STATUS_BY_ERROR",
        "ScoreRequest",
        "ScoreResponse",
    },
    "app.client": {
        "APIError",
        "Arm",
        "AsyncFusionrankClient",
        "BodyFormat",
        "CandidateDebug",
        "ClientError",
        "ConnectionFailed",
        "DeadlineExceeded",
        "ErrorDetail",
        "Feature",
        "FilteredCandidate",
        "FusionrankClient",
        "RankedCandidate",
        "RetryPolicy",
        "ScoreResult",
        "Surface",
        "Unavailable",
        "UtilityTerm",
        "Versions",
    },
    "app.artifacts": {
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
        "OOV_INDEX",
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
    },
    "app.cli": {
        "app",
        "main",
        "version_text",
    },
    "app.control": {
        "BundleCache",
        "DryRun",
        "GoldenBatch",
        "GoldenDecoder",
        "PolicyChange",
        "PolicyWatcher",
        "Registry",
        "Served",
        "SnapshotHolder",
        "Triple",
        "describe_store",
        "load_snapshot",
        "served_from_files",
    },
    "app.errors": {
        "ArtifactError",
        "BodyTimeout",
        "Conflict",
        "DeadlineExceeded",
        "ErrorDetail",
        "FusionrankError",
        "InvalidRequest",
        "NotFound",
        "NotReady",
        "Overloaded",
        "PayloadTooLarge",
        "PolicyError",
        "Unauthorized",
        "UnsupportedMediaType",
        "ValueAt",
    },
    "app.monitoring": {
        "DriftScheme",
        "FeedbackCounters",
        "LATENCY_BUCKETS",
        "OTHER",
        "RecentEventIds",
        "SchemeCatalog",
        "SchemeMiss",
        "ServedPredictions",
        "ServiceMetrics",
        "log_loss",
        "population_stability_index",
        "run_psi_updates",
    },
    "app.offline.calibration": {
        "CalibrationStats",
        "FitConfig",
        "FitOutcome",
        "HistogramCalibrator",
        "IsotonicCalibrator",
        "LogitGrid",
        "METHODS",
        "OfflineCalibration",
        "PlattCalibrator",
        "PredictionFile",
        "StreamedMetrics",
        "TaskStats",
        "TemperatureCalibrator",
        "apply_predictions",
        "binned_metrics",
        "bucket_table",
        "collect",
        "drift_edges",
        "fit_predictions",
        "fit_segment_correction",
        "fit_statistics",
        "fit_task",
        "held_out_metrics",
        "holdout_mask",
        "make_calibrator",
        "reference_fractions",
        "segment_vocabularies",
        "write_report",
    },
    "app.offline.spark": {
        "SparkInput",
        "SparkReplayer",
        "collect_on_spark",
        "fit_on_spark",
        "parse_spark_conf",
        "quiet_settings",
        "read_input",
        "report_on_spark",
        "sampled_candidate_log",
        "spark_errors",
        "spark_session",
        "start_session",
    },
    "app.offline.tuning": {
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
    },
    "app.protocol": {
        "ARROW_MEDIA_TYPE",
        "ColumnarScoreRequest",
        "FEEDBACK_MEDIA_TYPES",
        "FeedbackEvent",
        "FeedbackRequest",
        "FeedbackResponse",
        "JSON_MEDIA_TYPE",
        "PARSE_AMPLIFICATION",
        "SCORE_MEDIA_TYPES",
        "ScoreEnvelope",
        "ScoreRequest",
        "ScoreResponse",
        "admit",
        "arrow_answer",
        "body_media_type",
        "decode_arrow_request",
        "decode_feedback",
        "decode_score",
        "decode_score_request",
        "encode_json_answer",
        "encode_score",
        "name_values",
        "parse_memory_bound",
        "score_response",
    },
    "app.serving": {
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
    },
    "app.settings": {
        "Settings",
        "get_settings",
        "is_uri",
    },
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_exported_names_are_the_pinned_ones(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{module_name}.__all__ lists a name twice"
    exported, pinned = set(names), PUBLIC[module_name]
    assert exported == pinned, (
        f"{module_name}.__all__ differs from the pinned names: "
        f"not pinned {sorted(exported - pinned)}, no longer exported {sorted(pinned - exported)}"
    )
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what the module does not define: {missing}"


def test_serving_side_never_imports_torch_or_offline() -> None:
    import subprocess
    import sys

    code = (
        "import sys, app.main, app.serving, app.api, app.monitoring, app.artifacts; "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'app.offline'))); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
