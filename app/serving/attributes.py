"""Read the candidate attributes a policy declares, checking each against its declared JSON type."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from operator import is_
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.bounds import MAX_ATTRIBUTE_MAGNITUDE
from app.artifacts.policy import AttributeType
from app.errors import InvalidRequest
from app.serving.columns import Candidates, EncodedStrings, Values, read_column, where
from app.serving.vectors import read_vectors

__all__ = ["AttributeColumns", "equals_mask", "extract_attributes", "missing_mask", "range_mask"]

# number -> float64 [B] with NaN for missing; string/boolean -> list with None for missing; vector -> float64
# [B, D] with NaN rows for missing.
AttributeColumns = dict[str, Values]

_ALLOWED: dict[str, frozenset[type]] = {
    "number": frozenset({int, float, type(None)}),
    "string": frozenset({str, type(None)}),
    "boolean": frozenset({bool, type(None)}),
}


def extract_attributes(
    attributes: Candidates, declared: Mapping[str, AttributeType]
) -> AttributeColumns:
    """attributes: one mapping per candidate, or columns. Undeclared attributes are carried but not read."""
    columns: AttributeColumns = {}
    for name, kind in declared.items():
        read = read_column(attributes, name)
        column = read.tolist() if isinstance(read, EncodedStrings) else read
        if isinstance(column, np.ndarray) and kind != "number":
            # A numeric Arrow column where strings or booleans were due: the check below names it.
            column = [None if v != v else v for v in column.tolist()]
        if kind == "vector":  # [B, D], read only by `ranking.mmr`
            columns[name] = read_vectors(list(column), attributes, name)
            continue
        allowed = _ALLOWED[kind]
        if not isinstance(column, np.ndarray) and not allowed.issuperset(map(type, column)):
            index = next(i for i, v in enumerate(column) if type(v) not in allowed)
            raise InvalidRequest.at(
                where(attributes, "attributes", name, index),
                f"expected a {kind}, got {type(column[index]).__name__}",
                f"send `{name}` as a JSON {kind} (or leave it out)", candidate_index=index,
            )
        if kind == "number":
            values = np.array(column, dtype=np.float64)
            # Missing (NaN) or finite within the bound every policy is validated against
            # (`app.artifacts.policy.utility_bound`): no legal request can overflow a legal policy.
            with np.errstate(invalid="ignore"):
                legal = ~(np.abs(values) > MAX_ATTRIBUTE_MAGNITUDE)
            if not legal.all():
                index = int(np.flatnonzero(~legal)[0])
                raise InvalidRequest.at(
                    where(attributes, "attributes", name, index),
                    f"value is not a finite number with |x| <= {MAX_ATTRIBUTE_MAGNITUDE:g}",
                    f"send a finite number between -{MAX_ATTRIBUTE_MAGNITUDE:g} and {MAX_ATTRIBUTE_MAGNITUDE:g}",
                    candidate_index=index,
                )
            columns[name] = values
        else:
            columns[name] = column
    return columns


def missing_mask(column: Values) -> npt.NDArray[np.bool_]:
    if isinstance(column, np.ndarray):
        return np.isnan(column)
    return np.fromiter(map(is_, column, repeat(None)), np.bool_, count=len(column))


def equals_mask(column: Values, value: Any) -> npt.NDArray[np.bool_]:
    """True where the attribute equals `value` with the same JSON type (true never equals 1)."""
    if isinstance(column, np.ndarray):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return np.zeros(len(column), dtype=np.bool_)
        return np.asarray(column == float(value))
    if isinstance(value, bool):  # True and False are singletons: identity is equality with the same type
        return np.fromiter(map(is_, column, repeat(value)), np.bool_, count=len(column))
    kind = type(value)
    return np.fromiter((v == value and type(v) is kind for v in column), np.bool_, count=len(column))


def range_mask(column: Values, below: float | None, above: float | None) -> npt.NDArray[np.bool_]:
    """True where the number attribute is below `below` and above `above` (either optional); a missing value never."""
    values = np.asarray(column, dtype=np.float64)
    hit = ~np.isnan(values)
    if below is not None:
        hit &= values < below
    if above is not None:
        hit &= values > above
    return hit
