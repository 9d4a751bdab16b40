"""What a body at the size limit costs to parse, measured: bounded by `PARSE_AMPLIFICATION` x its size,
and a body of far more objects than candidates is refused before it is parsed."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from app.errors import PayloadTooLarge
from app.protocol.arrow import ARROW_MEDIA_TYPE
from app.protocol.cost import PARSE_AMPLIFICATION, check_json_containers, parse_memory_bound
from app.protocol.feedback import decode_feedback
from app.protocol.rows import decode_score_request
from app.settings import Settings
from tests.protocol.measure import decode_cost
from tests.protocol.test_arrow import stream

MiB = 1 << 20
LIMIT = Settings.model_fields["max_body_bytes"].default  # the shipped default
JSON = "application/json"


def filled(item: bytes, key: bytes = b"candidates") -> bytes:
    """A body of exactly-repeated `item`s as the candidates (or events), as close to LIMIT as fits."""
    prefix = b'{"request_id":"r","surface":"home","' + key + b'":['
    count = (LIMIT - len(prefix) - 2) // (len(item) + 1)
    return prefix + b",".join([item] * count) + b"]}"


def sample_at(sample: dict[str, Any], n: int) -> bytes:
    body = copy.deepcopy(sample)
    body["candidates"] = [dict(c, id=f"{c['id']}-{i}") for i in range(n) for c in sample["candidates"]][:n]
    return orjson.dumps(body)


def test_the_sample_request_at_max_candidates_fits_the_default_limit(sample_request: dict[str, Any]) -> None:
    """~300 bytes per candidate compact (~470 indented): 5000 candidates fit 4 MiB either way."""
    per_candidate = len(orjson.dumps(sample_request["candidates"])) / len(sample_request["candidates"])
    assert 250 < per_candidate < 350
    five_thousand = orjson.loads(sample_at(sample_request, 5000))
    assert len(orjson.dumps(five_thousand, option=orjson.OPT_INDENT_2)) < LIMIT == 4 * MiB


@pytest.mark.parametrize("item", [b"{}", b"[]", b'{"id":"a"}', b"[[[]]]"])
def test_objects_and_arrays_beyond_what_the_candidates_need_are_refused_before_parsing(
    item: bytes, tmp_path: Path
) -> None:
    """The red team's body of empty objects (5.6M at 16 MiB: 490 MB to parse) is 413 without an allocation."""
    body = filled(item)
    cost = decode_cost("json", body, tmp_path)
    assert cost["status"] == 413 and cost["traced_peak"] < 64 * 1024 and cost["seconds"] < 0.2, cost
    with pytest.raises(PayloadTooLarge, match="JSON objects and arrays"):
        decode_score_request(body, max_candidates=5000)


def test_feedback_bodies_get_the_same_count(tmp_path: Path) -> None:
    body = b'{"events":[' + b",".join([b"{}"] * 1_000_000) + b"]}"
    cost = decode_cost("feedback", body, tmp_path, max_candidates=10_000)
    assert cost["status"] == 413 and cost["traced_peak"] < 64 * 1024, cost
    with pytest.raises(PayloadTooLarge, match="events"):
        decode_feedback(body, max_events=10_000)


def test_the_count_leaves_room_for_legal_bodies(sample_request: dict[str, Any]) -> None:
    check_json_containers(sample_at(sample_request, 5000), 5000, "candidates")  # no error


@pytest.mark.parametrize(
    ("name", "item", "status"),
    [("1-char strings", b'"a"', 413), ("floats", b"1.5", 413), ("nulls", b"null", 413)],
)
def test_the_costliest_json_at_the_limit_stays_within_its_amplification(
    name: str, item: bytes, status: int, tmp_path: Path
) -> None:
    body = filled(item)
    assert LIMIT - 8 < len(body) <= LIMIT
    cost = decode_cost("json", body, tmp_path)
    assert cost["status"] == status, cost
    assert cost["traced_peak"] <= PARSE_AMPLIFICATION[JSON] * len(body), (name, cost["traced_peak"] / len(body))
    assert cost["traced_peak"] <= parse_memory_bound(JSON, len(body), 0)


def test_a_legal_request_of_max_candidates_costs_about_15_bytes_per_byte(
    sample_request: dict[str, Any], tmp_path: Path
) -> None:
    body = sample_at(sample_request, 5000)
    cost = decode_cost("json", body, tmp_path)
    assert cost["status"] == 200, cost
    assert cost["traced_peak"] <= 17 * len(body), cost["traced_peak"] / len(body)


def test_an_uncompressed_arrow_body_stays_within_its_amplification(tmp_path: Path) -> None:
    """int8 columns are the costliest per body byte: each value becomes float64 (twice, transiently)."""
    ids = pa.array([f"c{i}" for i in range(5000)])
    columns = [pa.array(np.ones(5000, dtype=np.int8))] * 350
    body = stream(pa.RecordBatch.from_arrays([ids, *columns], ["id", *(f"f{i}" for i in range(350))]))
    assert len(body) < LIMIT
    cost = decode_cost("arrow", body, tmp_path)
    spent = cost["pool_peak"] + cost["traced_peak"]
    assert cost["status"] == 200, cost
    assert spent <= PARSE_AMPLIFICATION[ARROW_MEDIA_TYPE] * len(body), spent / len(body)
    assert spent <= parse_memory_bound(ARROW_MEDIA_TYPE, len(body), 32 * MiB)


def test_a_compressed_arrow_body_stays_within_the_decoded_budget(tmp_path: Path) -> None:
    """zstd makes the body tiny, so its cost is bounded by max_decoded_bytes, not by its size."""
    ids = pa.array([f"c{i}" for i in range(5000)])
    columns = [pa.array(np.ones(5000, dtype=np.int8))] * 390  # just under 32 MiB as declared
    body = stream(pa.RecordBatch.from_arrays([ids, *columns], ["id", *(f"f{i}" for i in range(390))]), "zstd")
    cost = decode_cost("arrow", body, tmp_path)
    assert cost["status"] == 200, cost
    assert cost["pool_peak"] + cost["traced_peak"] <= parse_memory_bound(ARROW_MEDIA_TYPE, len(body), 32 * MiB)


def test_the_red_team_body_of_empty_objects_is_refused_within_a_second_over_http(client: Any) -> None:
    """16 MiB of `{}` candidates (5.6M; 490 MB to parse before): 413 on its declared size; at the 4 MiB
    limit, 413 on the object count, neither parsed."""
    for size in (16 * MiB, LIMIT):
        body = b'{"request_id":"r","surface":"home","candidates":[' + b",".join([b"{}"] * ((size - 60) // 3)) + b"]}"
        t0 = time.perf_counter()
        response = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
        assert time.perf_counter() - t0 < 1.0
        assert response.status_code == 413, response.text
        assert response.json()["error"]["details"][0]["field"] in ("body", "candidates")


def test_the_count_is_exact_at_its_edge() -> None:
    """Skipped below 2 bytes per possible container, and still refuses one container too many."""
    limit = 8 * 10 + 64
    check_json_containers(b"[" * limit + b"]" * limit, 10, "candidates")  # exactly the limit: fine
    with pytest.raises(PayloadTooLarge):
        check_json_containers(b"[" * (limit + 1) + b"]" * (limit + 1), 10, "candidates")
