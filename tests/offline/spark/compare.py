"""Compare two JSON trees: every number within a tolerance, everything else equal."""

from __future__ import annotations

import math
from typing import Any


def max_number_diff(a: Any, b: Any, path: str = "") -> float:
    """Max abs difference over every number of two JSON trees; other values (and keys) must be equal."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        return max([max_number_diff(a[k], b[k], f"{path}.{k}") for k in a] or [0.0])
    if isinstance(a, list):
        assert len(a) == len(b), path
        return max([max_number_diff(x, y, f"{path}[]") for x, y in zip(a, b, strict=True)] or [0.0])
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), path
            return 0.0
        return abs(float(a) - float(b))
    assert a == b, path
    return 0.0
