"""Calibration fitting (offline); applying uses `app.serving.calibration`, the service's own code."""

from app.offline.calibration.drift import drift_edges, reference_fractions
from app.offline.calibration.platt import PlattCalibrator

__all__ = ["PlattCalibrator", "drift_edges", "reference_fractions"]
