"""Position buckets of a training log's `dataset.position` column (the input of the training-only tower).

Position p (0-based, as the served log writes it) goes to bucket min(p, buckets - 1): the first
positions each get their own bias, the tail shares one. A null, negative or non-numeric-looking
position is "unknown" (bucket `buckets`), the same slot position dropout uses during training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from app.offline.training.spec import DatasetError, PositionColumn

__all__ = ["position_buckets"]


def position_buckets(column: pa.Array | pa.ChunkedArray, position: PositionColumn, path: Path) -> npt.NDArray[np.int64]:
    """[R] bucket of each row's position: min(position, buckets - 1); `buckets` where it is unknown."""
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DatasetError(path, position.column, f"position column has type {column.type}",
                           "store the 0-based position the candidate was shown at as a number")
    values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    known = np.isfinite(values) & (values >= 0)
    clipped = np.minimum(np.where(known, values, 0.0), position.buckets - 1)
    return np.where(known, np.floor(clipped), position.buckets).astype(np.int64)
