"""Candidates as rows or as columns, read one named column at a time by the encoders.

Row bodies give one mapping per candidate (`candidates[i].features[name]`); columnar bodies (column
JSON, Arrow) give one sequence per name (`columns[name][i]`). The feature encoder and the attribute
reader ask for a column by name and name a bad value by `where()`, so both shapes share one set of
checks and one set of error messages, differing only in the path they print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import contains, itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CandidateColumns", "Candidates", "Column", "EncodedStrings", "Values", "read_column", "where"]

# B values as the policy stages read them: a list with None for missing, or float64 [B] with NaN for
# missing (Arrow numeric columns arrive that way, without a Python object per value).
Values = list[Any] | npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EncodedStrings:
    """A string column dictionary-encoded at the edge (Arrow): value i is `distinct[codes[i]]`, -1 = missing.

    The feature encoder maps the few distinct values to vocabulary indices and gathers by code, instead
    of building and looking up one Python string per candidate.
    """

    codes: npt.NDArray[np.intp]  # [B]
    distinct: list[str]

    def tolist(self) -> list[str | None]:
        table = np.array([*self.distinct, None], dtype=object)  # code -1 picks the trailing None
        values: list[str | None] = table[self.codes].tolist()
        return values


Column = Values | EncodedStrings


@dataclass(frozen=True, slots=True)
class CandidateColumns:
    """B candidates column-oriented: name -> Column of length `size` (checked at the edge)."""

    size: int
    columns: Mapping[str, Column]


# Row-oriented: one mapping per candidate (its `features` or its `attributes`).
Candidates = Sequence[Mapping[str, Any]] | CandidateColumns


def read_column(candidates: Candidates, name: str) -> Column:
    """The values of `name` for every candidate, None (or NaN) where a candidate lacks it."""
    if isinstance(candidates, CandidateColumns):
        column = candidates.columns.get(name)
        return [None] * candidates.size if column is None else column
    try:  # fast path, every candidate has it: one C loop instead of a Python-level `get` per candidate
        return list(map(itemgetter(name), candidates))
    except KeyError:
        pass
    if not any(map(contains, candidates, repeat(name))):  # e.g. a feature sent in the context only
        return [None] * len(candidates)
    return [c.get(name) for c in candidates]


def where(candidates: Candidates, section: str, name: str, index: int) -> str:
    """Path of one value in the request: `candidates[3].features.price` or `columns.price[3]`."""
    if isinstance(candidates, CandidateColumns):
        return f"columns.{name}[{index}]"
    return f"candidates[{index}].{section}.{name}"
