"""Turn JSON candidates into the model's input matrices, column by column.

The fast path assumes well-formed input and converts each feature column with one numpy call;
only when a column fails does a slow scan find the first candidate at fault to name it.
Lookup order for a feature: the candidate's `features`, then the request context's `features`,
then the manifest default; a numeric feature without a default is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.manifest import OOV_INDEX, FeatureSchema
from app.errors import InvalidRequest
from app.serving.columns import CandidateColumns, Candidates, Column, EncodedStrings, Unsent, read_column, where

__all__ = ["EncodedFeatures", "FeatureEncoder"]

_NUMBER_TYPES = frozenset({int, float, type(None)})
_CATEGORY_TYPES = frozenset({str, type(None)})
_MISSING = -1  # a categorical value not sent: the context's category fills it
# Up to this many candidates a categorical column is encoded in plain Python (`_small_categorical_column`).
SMALL_BATCH = 64


@dataclass(frozen=True, slots=True)
class EncodedFeatures:
    """numeric: float32 [B, N]; categorical: int64 [B, C] (0 = out of vocabulary)."""

    numeric: npt.NDArray[np.float32]
    categorical: npt.NDArray[np.int64]


_FLOAT32_MAX = float(np.finfo(np.float32).max)


class FeatureEncoder:
    """Encodes candidates by a manifest's feature schema; built once per bundle."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.numeric_names = [f.name for f in schema.numeric]
        self.numeric_defaults = np.array(
            [np.nan if f.default is None else f.default for f in schema.numeric], dtype=np.float64
        )
        self.categorical_names = [f.name for f in schema.categorical]
        # value -> index; index 0 is reserved for unknown values (ONNX Gather wraps negatives).
        self.vocabularies = [
            {value: i + 1 for i, value in enumerate(f.vocabulary)} for f in schema.categorical
        ]
        # The same with None (missing) -> _MISSING, replaced per request by the context's category.
        self.lookups = [_with_missing(v, _MISSING) for v in self.vocabularies]

    def encode(
        self, features: Candidates, context_features: Mapping[str, Any]
    ) -> EncodedFeatures:
        """features: one mapping per candidate (already checked to be dicts), or columns."""
        n = features.size if isinstance(features, CandidateColumns) else len(features)
        # One problem per bad column, so that a client fixes them all at once; in column order.
        problems: dict[str, InvalidRequest] = {}
        numeric = self._numeric_block(n, features, context_features, problems)
        categorical = np.empty((n, len(self.categorical_names)), dtype=np.int64)
        for j, name in enumerate(self.categorical_names):
            if n <= SMALL_BATCH:
                codes = self._small_categorical_column(name, j, features, context_features)
                if codes is not None:
                    categorical[:, j] = codes
                    continue
            try:
                categorical[:, j] = self._categorical_column(name, j, features, context_features)
            except InvalidRequest as problem:
                problems[name] = problem
        if problems:
            found = [problems[name] for name in (*self.numeric_names, *self.categorical_names) if name in problems]
            details = [d for problem in found for d in problem.details]
            raise InvalidRequest(
                found[0].message + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""), details=details,
            )
        return EncodedFeatures(numeric, categorical)

    def _numeric_block(
        self, n: int, features: Candidates, context: Mapping[str, Any], problems: dict[str, InvalidRequest]
    ) -> npt.NDArray[np.float32]:
        """All numeric features at once: float32 [B, N]; a bad column adds its problem.

        The checks run on the whole [N, B] block with a handful of numpy calls; only a column that
        fails one is looked at alone, to name its first bad candidate.
        """
        columns = [read_column(features, name) for name in self.numeric_names]
        for j, column in enumerate(columns):
            if isinstance(column, Unsent):  # all missing: NaN, filled below, without a None per candidate
                columns[j] = np.full(n, np.nan)
            elif isinstance(column, EncodedStrings):  # strings where numbers are due: named below
                column = columns[j] = column.tolist()
            if not isinstance(column, np.ndarray) and not _NUMBER_TYPES.issuperset(map(type, column)):
                problems[self.numeric_names[j]] = _bad_number(features, self.numeric_names[j], column)
                columns[j] = [None] * n
        block = np.array(columns, dtype=np.float64).reshape(len(columns), n)  # None -> NaN: missing
        missing = np.isnan(block)
        if missing.any():
            for j in np.flatnonzero(missing.any(axis=1)).tolist():
                name = self.numeric_names[j]
                if name not in problems:
                    try:
                        block[j, missing[j]] = self._fill(name, j, features, context, missing[j])
                    except InvalidRequest as problem:
                        problems[name] = problem
        # The model reads float32: a finite float64 such as 1e308 would become inf there.
        out_of_range = ~(np.abs(block) <= _FLOAT32_MAX)  # NaN compares False: caught too
        if out_of_range.any():
            for j in np.flatnonzero(out_of_range.any(axis=1)).tolist():
                name = self.numeric_names[j]
                if name not in problems:
                    index = int(np.flatnonzero(out_of_range[j])[0])
                    problems[name] = InvalidRequest.at(
                        where(features, "features", name, index), "value is not finite (as float32, |x| <= 3.4e38)",
                        "send a finite number (NaN and infinity are not features)", candidate_index=index,
                    )
        if problems:  # the request is refused: no float32 block (a bad value would overflow the cast)
            return np.zeros((n, len(columns)), dtype=np.float32)
        return block.T.astype(np.float32, order="C")

    def _fill(
        self, name: str, j: int, features: Candidates, context: Mapping[str, Any], missing: npt.NDArray[np.bool_]
    ) -> float:
        """The value for candidates without `name`: the context's, else the manifest default."""
        fill = context.get(name, None)
        if fill is None:
            fill = self.numeric_defaults[j]
        elif type(fill) not in (int, float):
            raise InvalidRequest.at(
                f"context.features.{name}", f"expected a number, got {type(fill).__name__}", "send a JSON number",
            )
        if np.isnan(fill):
            index = int(np.flatnonzero(missing)[0])
            raise InvalidRequest.at(
                where(features, "features", name, index), "required numeric feature is missing",
                f"send `{name}` for every candidate (or in context.features)", candidate_index=index,
            )
        return float(fill)

    def _small_categorical_column(
        self, name: str, j: int, features: Candidates, context: Mapping[str, Any]
    ) -> list[int] | None:
        """`_categorical_column` for a small batch in plain Python (a numpy call costs more than a few dozen
        lookups), or None when a value or the context's category is not a string or None: the general
        path then names it. The codes are equal to the general path's (tests/serving/test_fast_paths.py)."""
        raw = read_column(features, name)
        fallback = context.get(name)
        if isinstance(raw, EncodedStrings) or (fallback is not None and not isinstance(fallback, str)):
            return None
        fill = OOV_INDEX if fallback is None else self.vocabularies[j].get(fallback, OOV_INDEX)
        if isinstance(raw, Unsent):
            return [fill] * len(raw)
        column = _objects(raw)
        try:
            codes = list(map(self.lookups[j].get, column, repeat(OOV_INDEX)))
        except TypeError:  # an unhashable value
            return None
        if OOV_INDEX in codes and not _CATEGORY_TYPES.issuperset(
            [type(value) for value, code in zip(column, codes, strict=True) if code == OOV_INDEX]
        ):
            return None
        if _MISSING in codes:
            codes = [fill if code == _MISSING else code for code in codes]
        return codes

    def _categorical_column(
        self, name: str, j: int, features: Candidates, context: Mapping[str, Any]
    ) -> npt.NDArray[np.int64]:
        raw = read_column(features, name)
        lookup = self.lookups[j]
        if isinstance(raw, Unsent):  # every value missing: the context's category fills the whole column
            codes = np.full(len(raw), _MISSING, dtype=np.int64)
        elif isinstance(raw, EncodedStrings):  # look up the few distinct values, then gather by code
            table = np.array([*map(lookup.get, raw.distinct, repeat(OOV_INDEX)), _MISSING], dtype=np.int64)
            codes = table[raw.codes]
        else:
            column = _objects(raw)
            try:  # map() keeps the lookups in C
                codes = np.fromiter(map(lookup.get, column, repeat(OOV_INDEX)), dtype=np.int64, count=len(column))
            except TypeError:  # an unhashable value (a list, an object): named by the check below
                codes = np.full(len(column), OOV_INDEX, dtype=np.int64)
            _check_categories(features, name, column, codes)
        fallback = context.get(name)
        if fallback is not None and not isinstance(fallback, str):
            raise InvalidRequest.at(
                f"context.features.{name}", f"expected a string category, got {type(fallback).__name__}",
                "send categorical values as JSON strings",
            )
        missing = codes == _MISSING  # a missing value takes the context's category, else out of vocabulary
        if missing.any():
            codes[missing] = OOV_INDEX if fallback is None else self.vocabularies[j].get(fallback, OOV_INDEX)
        return codes


def _check_categories(features: Candidates, name: str, column: list[Any], codes: npt.NDArray[np.int64]) -> None:
    """Refuse a value that is not a string. Such a value is never in the vocabulary (its keys are
    strings), so only the out-of-vocabulary positions, usually few, have their type looked at."""
    unknown = np.flatnonzero(codes == OOV_INDEX).tolist()
    if _CATEGORY_TYPES.issuperset(map(type, map(column.__getitem__, unknown))):
        return
    index = next(i for i in unknown if type(column[i]) not in _CATEGORY_TYPES)
    raise InvalidRequest.at(
        where(features, "features", name, index), f"expected a string category, got {type(column[index]).__name__}",
        "send categorical values as JSON strings", candidate_index=index,
    )


def _with_missing(vocabulary: dict[str, int], missing: int) -> dict[str | None, int]:
    """value -> index, and None (a missing value) -> `missing`."""
    lookup: dict[str | None, int] = {None: missing}
    lookup.update(vocabulary)
    return lookup


def _objects(column: Column) -> list[Any]:
    """A column as Python values; a float64 column (numbers where strings were due) keeps its floats."""
    if isinstance(column, np.ndarray):
        return [None if v != v else v for v in column.tolist()]
    if isinstance(column, EncodedStrings):
        return column.tolist()
    return column


def _bad_number(features: Candidates, name: str, column: list[Any]) -> InvalidRequest:
    index = next(i for i, v in enumerate(column) if type(v) not in _NUMBER_TYPES)
    value = column[index]
    return InvalidRequest.at(
        where(features, "features", name, index), f"expected a number, got {type(value).__name__}",
        "send a JSON number (strings and booleans are not numeric features)", candidate_index=index,
    )
