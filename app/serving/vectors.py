"""Vector attributes (`attributes: {embedding: vector}`): a list of numbers per candidate, read by `ranking.mmr`.

Checked where the request is read: every present value is a list of 1 to `MAX_VECTOR_LENGTH` finite numbers with
|x| <= `MAX_VECTOR_ELEMENT`, all of one length; a missing value (null, absent) becomes a row of NaN. JSON bodies
only: an Arrow body has no list columns (`app.protocol.arrow` refuses them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.policy_ranking import MAX_VECTOR_LENGTH
from app.errors import InvalidRequest
from app.serving.columns import Candidates, where

__all__ = ["MAX_VECTOR_ELEMENT", "read_vectors"]

MAX_VECTOR_ELEMENT = 1e6  # squares and dot products of at most 64 of them stay far from overflow


def read_vectors(column: list[Any], attributes: Candidates, name: str) -> npt.NDArray[np.float64]:
    """column: one value per candidate -> float64 [B, D] (NaN rows for missing); raises `InvalidRequest`."""
    length = None
    for index, value in enumerate(column):
        if value is None:
            continue
        ok = (type(value) is list and 0 < len(value) <= MAX_VECTOR_LENGTH
              and all(type(x) in (int, float) and math.isfinite(x) and abs(x) <= MAX_VECTOR_ELEMENT for x in value))
        if ok and length is not None and len(value) != length:
            raise InvalidRequest.at(
                where(attributes, "attributes", name, index), f"a vector of {len(value)} numbers, others have {length}",
                f"send every `{name}` with the same length", candidate_index=index)
        if not ok:
            raise InvalidRequest.at(
                where(attributes, "attributes", name, index),
                f"expected a list of 1 to {MAX_VECTOR_LENGTH} finite numbers with |x| <= {MAX_VECTOR_ELEMENT:g}",
                f"send `{name}` as a JSON array of numbers (or leave it out)", candidate_index=index)
        length = len(value)
    out = np.full((len(column), length or 1), np.nan)
    present = [i for i, v in enumerate(column) if v is not None]
    if present:
        out[present] = np.array([column[i] for i in present], dtype=np.float64)
    return out
