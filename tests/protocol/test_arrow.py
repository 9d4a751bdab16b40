"""Arrow IPC bodies: what a stream declares is checked before pyarrow decompresses or converts it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from app.errors import InvalidRequest, PayloadTooLarge
from app.protocol.arrow import ARROW_MEDIA_TYPE, REQUEST_KEY, decode_arrow_request
from tests.api.test_columnar import post_arrow, to_arrow
from tests.protocol.measure import decode_cost

ENVELOPE = orjson.dumps({"request_id": "r-1", "surface": "home"})
MiB = 1 << 20


def stream(batch: pa.RecordBatch, compression: str | None = None) -> bytes:
    batch = batch.replace_schema_metadata({REQUEST_KEY: ENVELOPE})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def zeros(rows: int) -> pa.Array:
    """`rows` float64 zeros without touching their memory (calloc'd pages stay unmapped)."""
    return pa.array(np.zeros(rows))


def empty_strings(rows: int) -> pa.Array:
    """`rows` empty strings: an all-zero offsets buffer, no data."""
    offsets = pa.py_buffer(np.zeros(rows + 1, dtype=np.int32))
    return pa.StringArray.from_buffers(rows, offsets, pa.py_buffer(b""))


@pytest.fixture(scope="module")
def zstd_zeros() -> bytes:
    """The red team's body: one float64 column of 100M zeros, zstd-compressed (~25 KB)."""
    return stream(pa.RecordBatch.from_arrays([zeros(100_000_000)], ["item_price"]), "zstd")


@pytest.fixture(scope="module")
def zstd_zeros_with_ids() -> bytes:
    """The same with an `id` column of 100M (empty) strings, so only the row count can refuse it."""
    return stream(
        pa.RecordBatch.from_arrays([empty_strings(100_000_000), zeros(100_000_000)], ["id", "item_price"]), "zstd"
    )


@pytest.fixture(scope="module")
def null_ids() -> bytes:
    """The red team's 328-byte body: an `id` column of type null with 50M rows."""
    return stream(pa.RecordBatch.from_arrays([pa.nulls(50_000_000)], ["id"]))


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [("zstd_zeros", 422, "columns.id"), ("zstd_zeros_with_ids", 413, "columns.id"), ("null_ids", 422, "columns.id")],
)
def test_hostile_arrow_bodies_are_refused_before_allocation(
    body: str, status: int, field: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    content: bytes = request.getfixturevalue(body)
    assert len(content) < 64 * 1024
    cost = decode_cost("arrow", content, tmp_path)
    assert cost["status"] == status, cost
    assert cost["seconds"] < 0.2, cost  # was 3.3 s and 11.4 s
    assert cost["rss_peak_growth"] < 50 * MiB and cost["rss_kept"] < 10 * MiB, cost  # was +783 MB and +390 MB
    assert cost["pool_peak"] < 1 * MiB, cost  # pyarrow allocated nothing: no buffer was decompressed
    assert cost["traced_peak"] < 1 * MiB, cost  # no Python object per row
    with pytest.raises(InvalidRequest) as caught:
        decode_arrow_request(content, max_candidates=5000, max_decoded_bytes=32 * MiB)
    assert caught.value.details[0].field == field


def test_hostile_arrow_bodies_over_http_answer_within_a_second(
    client: TestClient, zstd_zeros: bytes, zstd_zeros_with_ids: bytes, null_ids: bytes
) -> None:
    for content, status in ((zstd_zeros, 422), (zstd_zeros_with_ids, 413), (null_ids, 422)):
        t0 = time.perf_counter()
        response = post_arrow(client, content)
        assert time.perf_counter() - t0 < 1.0
        assert response.status_code == status, response.text


def test_a_stream_within_the_row_limit_that_decompresses_past_the_budget_is_413(tmp_path: Path) -> None:
    """5000 rows x 600 float64 columns of zeros: ~0.5 MB zstd, 24 MB decompressed + 48 MB converted."""
    names = ["id", *(f"f{i}" for i in range(600))]
    arrays = [pa.array([f"c{i}" for i in range(5000)]), *([zeros(5000)] * 600)]
    content = stream(pa.RecordBatch.from_arrays(arrays, names), "zstd")
    cost = decode_cost("arrow", content, tmp_path)
    assert cost["status"] == 413 and cost["pool_peak"] < 1 * MiB and cost["seconds"] < 0.5, cost
    with pytest.raises(PayloadTooLarge, match=r"decodes to 72\d{6} bytes"):
        decode_arrow_request(content, max_candidates=5000, max_decoded_bytes=32 * MiB)
    # the same stream is decoded when the budget allows it
    envelope, scored = decode_arrow_request(content, max_candidates=5000, max_decoded_bytes=128 * MiB)
    assert len(scored.ids) == 5000 and envelope.request_id == "r-1"


UNSUPPORTED = {
    "null": pa.nulls(3),
    "list": pa.array([[1.0], [2.0], None]),
    "struct": pa.array([{"a": 1}, {"a": 2}, None]),
    "map": pa.array([[("a", 1)], [], None], type=pa.map_(pa.string(), pa.int64())),
    "union": pa.UnionArray.from_sparse(pa.array([0, 1, 0], type=pa.int8()),
                                       [pa.array([1, 2, 3]), pa.array(["a", "b", "c"])]),
    "dictionary of integers": pa.array([1, 2, 1]).dictionary_encode(),
    "binary": pa.array([b"a", b"b", None]),
    "timestamp": pa.array([0, 1, 2], type=pa.timestamp("s")),
    "decimal": pa.array([1, 2, 3], type=pa.decimal128(5, 2)),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_unsupported_column_types_are_refused_at_the_schema_naming_the_column(kind: str) -> None:
    batch = pa.RecordBatch.from_arrays([pa.array(["a", "b", "c"]), UNSUPPORTED[kind]], ["id", "item_price"])
    with pytest.raises(InvalidRequest) as caught:
        decode_arrow_request(stream(batch), max_candidates=10, max_decoded_bytes=MiB)
    detail = caught.value.details[0]
    assert detail.field == "columns.item_price" and "unsupported column type" in detail.message
    assert detail.fix and "string" in detail.fix


def test_an_id_column_that_is_not_strings_is_named() -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2])], ["id"])
    with pytest.raises(InvalidRequest, match=r"columns\.id: type int64 is not a string type"):
        decode_arrow_request(stream(batch), max_candidates=10, max_decoded_bytes=MiB)


@pytest.mark.parametrize(
    "mangle",
    [lambda b: b[:-20], lambda b: b[:40], lambda b: b[:8] + b"\xff" * 64 + b[72:], lambda b: b"\xff\xff\xff\xff" + b],
)
def test_corrupt_streams_are_422_not_a_crash(sample_request: dict[str, Any], mangle: Any) -> None:
    content = mangle(to_arrow(sample_request))
    with pytest.raises(InvalidRequest) as caught:
        decode_arrow_request(content, max_candidates=100, max_decoded_bytes=MiB)
    assert caught.value.details[0].field in ("body", "schema.metadata", "columns.id")


def test_dictionary_string_columns_score_like_plain_strings(client: TestClient, sample_request: dict[str, Any]) -> None:
    """dictionary<int32, string> columns (pandas categoricals) reach the encoder as codes; a null index
    and an index to a null dictionary value are both missing."""
    plain = pa.ipc.open_stream(to_arrow(sample_request)).read_next_batch()
    names = plain.schema.names
    arrays = [c.dictionary_encode() if pa.types.is_string(c.type) and n != "id" else c
              for n, c in zip(names, plain.columns, strict=True)]
    item_type = arrays[names.index("item_type")]
    values = item_type.dictionary.to_pylist()
    indices = item_type.indices.to_pylist()
    indices[0], indices[1] = len(values), None  # candidate 0: a null value; candidate 1: a null index
    arrays[names.index("item_type")] = pa.DictionaryArray.from_arrays(
        pa.array(indices, type=pa.int32()), pa.array([*values, None])
    )
    batch = pa.RecordBatch.from_arrays(arrays, names).replace_schema_metadata(plain.schema.metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    for candidate in sample_request["candidates"][:2]:
        candidate["features"]["item_type"] = None
    encoded = client.post("/v1/score", content=bytes(sink.getvalue().to_pybytes()),
                          headers={"content-type": ARROW_MEDIA_TYPE})
    rows = client.post("/v1/score", content=orjson.dumps(sample_request))
    assert encoded.status_code == rows.status_code == 200, encoded.text
    assert [(c["id"], c["utility"]) for c in encoded.json()["candidates"]] == [
        (c["id"], c["utility"]) for c in rows.json()["candidates"]
    ]


def test_flipped_bytes_anywhere_in_a_stream_are_refused_or_decoded_never_a_crash(
    sample_request: dict[str, Any],
) -> None:
    """Corruptions of valid streams (plain; zstd with dictionary columns): a 4xx naming the problem,
    or a valid decode; never another exception."""
    plain = to_arrow(sample_request)
    batch = pa.ipc.open_stream(plain).read_next_batch()
    arrays = [c.dictionary_encode() if pa.types.is_string(c.type) and n != "id" else c
              for n, c in zip(batch.schema.names, batch.columns, strict=True)]
    encoded = pa.RecordBatch.from_arrays(arrays, batch.schema.names).replace_schema_metadata(batch.schema.metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, encoded.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_batch(encoded)
    rng = np.random.default_rng(11)
    outcomes = {"ok": 0, "refused": 0}
    for content in (plain, bytes(sink.getvalue().to_pybytes())):
        for _ in range(300):
            mutated = bytearray(content)
            for _ in range(int(rng.integers(1, 4))):
                mutated[int(rng.integers(len(mutated)))] = int(rng.integers(256))
            try:
                decode_arrow_request(bytes(mutated), max_candidates=100, max_decoded_bytes=MiB)
                outcomes["ok"] += 1
            except InvalidRequest as exc:
                assert exc.details and exc.details[0].field and exc.details[0].fix
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 600
