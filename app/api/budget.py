"""The memory budget of admitted work: what the bodies being read and parsed may cost, in bytes.

A body of n bytes costs about `amplification × n` bytes of memory while it is parsed (Python objects
for JSON, buffers for Arrow). Admission (app/api/limits.py) reserves that cost before a body is
parsed and gives it back when the answer is sent; past `FUSIONRANK_MEMORY_BUDGET_BYTES` a request is
shed with 503 + Retry-After, unparsed. The budget is one number, set beside the pod's memory limit.
"""

from __future__ import annotations

import math

__all__ = ["PARSE_AMPLIFICATION", "MemoryBudget", "amplification", "parse_cost"]

# Peak bytes allocated while a body is parsed, per body byte (tracemalloc around the decoder, warm,
# on the demo bundle's sample request grown to 2000 candidates; 2026-12-06):
#   row JSON 15.5x, column JSON 17.2x, Arrow IPC (uncompressed) 1.5x; and the worst JSON known,
#   a list of empty objects `[{},{},...]` (orjson.loads alone): 36x (the red team saw +490 MB of RSS
#   for a 16 MiB body). JSON is charged the worst case, as its content is not known before parsing.
# app/protocol (decoders) will export its own measured table; this one is then replaced by it.
# Arrow bodies compressed with zstd/lz4 may expand further: their decoder bounds the decompressed
# bytes itself (a budget of its own), so this factor covers the uncompressed layout only.
PARSE_AMPLIFICATION: dict[str, float] = {
    "application/json": 36.0,
    "application/vnd.apache.arrow.stream": 2.0,
}
# A media type not in the table (refused later by the route) is charged as the costliest format.
_UNKNOWN_AMPLIFICATION = max(PARSE_AMPLIFICATION.values())


def amplification(content_type: str | None) -> float:
    """Parse cost per body byte for a `Content-Type` header value (parameters such as charset ignored)."""
    if content_type is None:
        return PARSE_AMPLIFICATION["application/json"]  # the routes' default body type
    media = content_type.split(";", 1)[0].strip().lower()
    return PARSE_AMPLIFICATION.get(media, _UNKNOWN_AMPLIFICATION)


def parse_cost(body_bytes: int, factor: float) -> int:
    """Bytes reserved for parsing a body of `body_bytes` bytes (the body itself included)."""
    return math.ceil(body_bytes * factor)


class MemoryBudget:
    """Bytes reserved by admitted requests against a fixed budget (0: no budget, only counted).

    Used from the event loop only (ASGI middleware), so no lock: a check and its reservation happen
    without an await between them.
    """

    def __init__(self, budget_bytes: int = 0) -> None:
        self.budget_bytes = budget_bytes
        self.reserved_bytes = 0

    def can_ever_fit(self, cost: int) -> bool:
        """False when `cost` is more than the whole budget: such a request can never be admitted."""
        return not self.budget_bytes or cost <= self.budget_bytes

    def try_reserve(self, cost: int) -> bool:
        """Reserve `cost` bytes if they fit beside what is reserved now; False (nothing reserved) if not."""
        if self.budget_bytes and self.reserved_bytes + cost > self.budget_bytes:
            return False
        self.reserved_bytes += cost
        return True

    def release(self, cost: int) -> None:
        self.reserved_bytes -= cost
