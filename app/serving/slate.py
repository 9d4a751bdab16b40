"""Order the surviving candidates by utility and apply the slate rules, then top_k.

Rules run in file order (max_per_value rules, then max_matching rules), each over the survivors of
the previous rules; a candidate a rule drops comes back as filtered with the rule's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.policy import SlateRules
from app.serving.attributes import AttributeColumns, equals_mask
from app.serving.columns import Values

__all__ = [
    "SMALL_SLATE", "SlateResult", "apply_caps", "apply_slate", "occurrence_rank", "over_per_value", "py_values",
    "value_codes",
]

IntArray = npt.NDArray[np.intp]
# Up to this many ranked candidates a max_per_value rule counts in plain Python (`over_per_value`).
SMALL_SLATE = 64


@dataclass(frozen=True, slots=True)
class SlateResult:
    ranked: IntArray  # candidate indices in answer order, at most top_k
    dropped: list[tuple[IntArray, str]]  # (candidate indices, rule name) per rule that dropped any
    truncated: IntArray  # survivors past top_k, in order


def value_codes(values: Sequence[Any]) -> IntArray:
    """A code per position, shared by equal values (numbered in order of first appearance); None (missing) is -1."""
    lookup = {value: code for code, value in enumerate(dict.fromkeys(values))}
    codes = np.fromiter(map(lookup.__getitem__, values), np.intp, count=len(values))
    if None in lookup:
        codes[codes == lookup[None]] = -1
    return codes


def occurrence_rank(codes: IntArray) -> IntArray:
    """For each position, how many earlier positions hold the same code (0 for the first).

    Code -1 (missing) never counts: a candidate without the attribute is not limited by the rule.
    """
    n = len(codes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    positions = np.arange(n)
    starts_group = np.empty(n, dtype=np.bool_)
    starts_group[:1] = True
    np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=starts_group[1:])
    # each sorted position minus the position where its group starts
    rank_sorted = positions - np.maximum.accumulate(np.where(starts_group, positions, 0))
    rank = np.empty(n, dtype=np.intp)
    rank[order] = rank_sorted
    rank[codes < 0] = 0
    return rank


def over_per_value(values: Sequence[Any], order: Sequence[int], limit: int) -> list[bool]:
    """For each candidate of `order` (best first): is it past the first `limit` of its value? A missing
    value (None) counts as a first one, never limited by the others. Plain Python, for small batches: the same answer as
    `occurrence_rank(value_codes(values)[order]) >= limit` (tests/serving/test_fast_paths.py)."""
    seen: dict[Any, int] = {}
    over = []
    for value in map(values.__getitem__, order):
        if value is None:
            over.append(limit <= 0)
            continue
        count = seen.get(value, 0)
        seen[value] = count + 1
        over.append(count >= limit)
    return over


def apply_slate(
    kept: IntArray,
    utility: npt.NDArray[np.float64],
    attributes: AttributeColumns,
    rules: SlateRules,
    top_k: int | None,
) -> SlateResult:
    """kept: indices that passed the guardrails. Ties in utility keep request order."""
    order, dropped = apply_caps(kept[np.argsort(-utility[kept], kind="stable")], attributes, rules)
    if top_k is not None and len(order) > top_k:
        return SlateResult(order[:top_k], dropped, order[top_k:])
    return SlateResult(order, dropped, np.empty(0, dtype=np.intp))


def apply_caps(
    order: IntArray, attributes: AttributeColumns, rules: SlateRules, codes_of: dict[str, IntArray] | None = None
) -> tuple[IntArray, list[tuple[IntArray, str]]]:
    """order: candidates in ranking order -> (the ones within every max cap, in order; (dropped, rule) per rule).

    codes_of: attribute -> `value_codes` already computed for this request (the ranking steps share them).
    """
    dropped: list[tuple[IntArray, str]] = []
    # Codes and matches are computed over the whole request in its order, then gathered into the ranking.
    for per_value in rules.max_per_value:
        name = per_value.attribute
        if codes_of is not None and name in codes_of:
            over = occurrence_rank(codes_of[name][order]) >= per_value.max
        elif len(order) <= SMALL_SLATE:
            over = np.array(over_per_value(py_values(attributes[name]), order.tolist(), per_value.max), dtype=np.bool_)
        else:
            over = occurrence_rank(value_codes(py_values(attributes[name]))[order]) >= per_value.max
        if over.any():
            dropped.append((order[over], per_value.name))
            order = order[~over]
    for matching in rules.max_matching:
        hits = equals_mask(attributes[matching.attribute], matching.equals)[order]
        over = hits & (np.cumsum(hits) > matching.max)
        if over.any():
            dropped.append((order[over], matching.name))
            order = order[~over]
    return order, dropped


def py_values(column: Values) -> list[Any]:
    """Python values: a number column's NaN (missing) -> None; a list column as it is."""
    if isinstance(column, np.ndarray):
        return [None if v != v else v for v in column.tolist()]
    return column
