"""Service settings from the environment (prefix ``FUSIONRANK_``), built in lifespan, never at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="FUSIONRANK_", extra="forbid", frozen=True)

    # Required on purpose: a service that silently serves from the wrong folder is worse than one
    # that refuses to start. `fusionrank serve` fills both from its options.
    model_store: Path = Field(description="Folder of model bundles: <model>/<version>/.")
    policies: Path = Field(description="Folder of policies: <surface>/<version>.yaml and <surface>/active.")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # onnxruntime threads per session. One keeps a 2-core replica predictable under concurrency.
    ort_intra_op_threads: int = Field(default=1, ge=0, le=64)
    max_candidates: int = Field(default=5000, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    default_top_k: int | None = Field(default=None, ge=1)
    admin_token: SecretStr | None = None
    # POST /v1/feedback: most outcome events one request may carry (more: 413).
    feedback_max_events: int = Field(default=10_000, ge=1)
    # Served-prediction PSI: recomputed every interval over the last `slots` intervals (15 x 60 s),
    # published once that window holds at least `min_predictions` predictions of a task.
    drift_psi_interval_seconds: float = Field(default=60.0, gt=0)
    drift_psi_window_slots: int = Field(default=15, ge=1, le=10_000)
    drift_psi_min_predictions: int = Field(default=1000, ge=1)
    log_level: str = "info"


def get_settings() -> Settings:
    """Read settings from the environment now (not at import time)."""
    return Settings()  # required fields come from the environment
