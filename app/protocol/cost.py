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

__all__ = ["CONTAINERS_PER_ITEM", "PARSE_AMPLIFICATION", "check_json_containers"]

# Peak bytes allocated while decoding a body, per body byte, for the costliest body of each format that
# passes `check_json_containers` and the Arrow metadata checks (tests/protocol/test_cost.py measures
# it at the default body limit; admission charges body size x this factor against its memory budget).
# JSON: a body of short strings (orjson's document plus one str object each; `"a",` costs ~27 bytes
# per byte); the shipped sample request costs ~15. Arrow: uncompressed int8 columns converted to
# float64 (a compressed Arrow body is bounded by `max_decoded_bytes` instead, whatever its size).
PARSE_AMPLIFICATION: dict[str, float] = {"application/json": 28.0, ARROW_MEDIA_TYPE: 12.0}

# Objects and arrays one candidate or feedback event needs: itself, `features`, `attributes` (or an
# event's `segment`), with room for list-valued attributes; plus the envelope's handful.
CONTAINERS_PER_ITEM = 8
_ENVELOPE_CONTAINERS = 64


def check_json_containers(body: bytes, max_items: int, field: str) -> None:
    """413 when `body` holds more `{`/`[` than `max_items` items and their envelope could need."""
    limit = CONTAINERS_PER_ITEM * max_items + _ENVELOPE_CONTAINERS
    containers = body.count(b"{") + body.count(b"[")
    if containers > limit:
        raise PayloadTooLarge.at(
            field, f"the body holds up to {containers} JSON objects and arrays, more than {limit}"
            f" ({CONTAINERS_PER_ITEM} per item for at most {max_items} items)",
            "split the batch; send each item as one flat object",
        )
