"""Candidates as rows or as columns, read one named column at a time by the encoders.

Row bodies give one mapping per candidate (`candidates[i].features[name]`); columnar bodies (column
JSON, Arrow) give one sequence per name (`columns[name][i]`). The feature encoder and the attribute
reader ask for a column by name and locate a bad value by `where()` (candidate, section, name), so both
shapes share one set of checks and messages; `app.protocol` turns the location into the body's path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import contains, itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from app.errors import ValueAt

__all__ = [
    "CandidateColumns", "Candidates", "Column", "EncodedStrings", "Unsent", "Values", "read_column", "where",
]

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


class Unsent(list[None]):
    """The column of a name no candidate sent (e.g. a user feature sent once in the context): all None.

    `read_column` returns it so that an encoder can fill the whole column at once instead of looking at
    each None."""


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
        return Unsent([None] * candidates.size) if column is None else column
    try:  # fast path, every candidate has it: one C loop instead of a Python-level `get` per candidate
        return list(map(itemgetter(name), candidates))
    except KeyError:
        pass
    if not any(map(contains, candidates, repeat(name))):  # e.g. a feature sent in the context only
        return Unsent([None] * len(candidates))
    return [c.get(name) for c in candidates]


def where(candidates: Candidates, section: str, name: str, index: int) -> ValueAt:
    """Where one value is: candidate `index`'s `section`.`name`. The body's path for it (row or column
    shape) is named by `app.protocol`, which knows the body; `candidates` is the container it came from."""
    del candidates  # the location is the same whatever the shape
    return ValueAt(section, name, index)
