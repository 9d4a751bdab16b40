"""fusionrank: calibrated multi-task ranking with versioned utility policies."""

__version__ = "0.1.0"

__all__ = ["__version__"]
