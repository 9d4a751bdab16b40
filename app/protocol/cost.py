"""What a body may cost to parse: the measured memory per body byte of each format, and the
allocation-free count that refuses a JSON body of far more objects than its items could need.

orjson builds every object of a document before the decoder can count candidates: a 16 MiB body of
`{}` items is 5.6M dicts (~490 MB) only to be refused for their number. `check_json_containers`
counts `{` and `[` in the raw bytes first (`bytes.count`: no allocation, ~1 ms per MiB); braces
inside strings only make the count an over-estimate, so a legal body is never refused for it unless
it also holds far more braces in its strings than the limit leaves room for.
"""

from __future__ import annotations

from app.errors import PayloadTooLarge
from app.protocol.arrow import ARROW_MEDIA_TYPE

__all__ = ["CONTAINERS_PER_ITEM", "PARSE_AMPLIFICATION", "check_json_containers", "parse_memory_bound"]

# Peak bytes allocated while decoding a body, per body byte, for the costliest body of each format that
# passes the checks before parsing (tests/protocol/test_cost.py measures them at the default limits;
# admission may charge body size x this factor against its memory budget).
# JSON: a body of 1-character strings, 26.5 (orjson's document plus one str object each); floats 20;
# `null` 13.6 (orjson sizes its document from the body length); the sample request grown to 5000
# candidates 15.4. Objects and arrays cost more (36) but `check_json_containers` refuses them first.
# Arrow, uncompressed: int8 columns converted to float64, 12.7. A compressed Arrow body is bounded
# absolutely instead: `parse_memory_bound`.
PARSE_AMPLIFICATION: dict[str, float] = {"application/json": 28.0, ARROW_MEDIA_TYPE: 13.0}


def parse_memory_bound(media_type: str, body_bytes: int, max_decoded_bytes: int) -> int:
    """Most bytes decoding a body of `body_bytes` may allocate (beyond the body itself).

    An Arrow stream is refused before reading when its declared decompressed buffers plus 16 bytes per
    value exceed `max_decoded_bytes`, whatever its compression; JSON costs a multiple of its size.
    """
    if media_type == ARROW_MEDIA_TYPE:  # compressed or not: what the metadata check lets through
        return max_decoded_bytes
    return int(PARSE_AMPLIFICATION[media_type] * body_bytes)


# Objects and arrays one candidate or feedback event needs: itself, `features`, `attributes` (or an
# event's `segment`), with room for list-valued attributes; plus the envelope's handful.
CONTAINERS_PER_ITEM = 8
_ENVELOPE_CONTAINERS = 64


def check_json_containers(body: bytes, max_items: int, field: str) -> None:
    """413 when `body` holds more `{`/`[` than `max_items` items and their envelope could need."""
    limit = CONTAINERS_PER_ITEM * max_items + _ENVELOPE_CONTAINERS
    if len(body) < 2 * limit:  # every object or array takes 2 bytes at least: cannot be over, skip the scan
        return
    containers = body.count(b"{") + body.count(b"[")  # ~0.3 ms per MB
    if containers > limit:
        raise PayloadTooLarge.at(
            field, f"the body holds up to {containers} JSON objects and arrays, more than {limit}"
            f" ({CONTAINERS_PER_ITEM} per item for at most {max_items} items)",
            "split the batch; send each item as one flat object",
        )
