"""Calibration fitting (offline); applying uses `app.serving.calibration`, the service's own code."""

from app.offline.calibration.apply import OfflineCalibration, apply_predictions, segment_vocabularies
from app.offline.calibration.binned_metrics import binned_metrics
from app.offline.calibration.build import FitOutcome, fit_predictions, fit_statistics, held_out_metrics
from app.offline.calibration.collect import collect, holdout_mask
from app.offline.calibration.drift import drift_edges, reference_fractions
from app.offline.calibration.fit import METHODS, FitConfig, fit_task, make_calibrator
from app.offline.calibration.histogram import HistogramCalibrator
from app.offline.calibration.isotonic import IsotonicCalibrator
from app.offline.calibration.platt import PlattCalibrator
from app.offline.calibration.report import write_report
from app.offline.calibration.segments import fit_segment_correction
from app.offline.calibration.source import PredictionFile
from app.offline.calibration.stats import CalibrationStats, LogitGrid, TaskStats
from app.offline.calibration.stream_metrics import StreamedMetrics, bucket_table
from app.offline.calibration.temperature import TemperatureCalibrator

__all__ = [
    "METHODS",
    "CalibrationStats",
    "FitConfig",
    "FitOutcome",
    "HistogramCalibrator",
    "IsotonicCalibrator",
    "LogitGrid",
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
]
