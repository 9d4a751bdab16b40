"""Event times of a training table: seconds since the epoch from its time column, and the time split's bounds."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from app.offline.training.spec import DatasetError, DatasetSpec

__all__ = ["event_seconds", "split_bounds", "utc_seconds"]


def event_seconds(column: pa.Array | pa.ChunkedArray, path: Path, name: str) -> npt.NDArray[np.float64]:
    """Seconds since the epoch from a timestamp or numeric column (naive timestamps are UTC)."""
    kind = column.type
    values: npt.NDArray[np.float64]
    if pa.types.is_timestamp(kind):
        micros = pc.cast(column, pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
        values = micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        raise DatasetError(
            path,
            name,
            f"event time has type {kind}",
            "store seconds since the epoch (int or float) or an ISO timestamp column",
        )
    if column.null_count or not np.isfinite(values).all():
        raise DatasetError(path, name, "event time has null or non-finite values", "give every row its event time")
    return values


def split_bounds(spec: DatasetSpec) -> tuple[float, float]:
    """(valid_start, test_start) in seconds for a time split; (inf, inf) otherwise (unused there)."""
    if spec.split.by == "time" and spec.split.valid_start and spec.split.test_start:
        return utc_seconds(spec.split.valid_start), utc_seconds(spec.split.test_start)
    return math.inf, math.inf


def utc_seconds(value: datetime) -> float:
    """Seconds since the epoch; a naive datetime is UTC."""
    return float((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
