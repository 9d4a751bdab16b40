"""`/v1/score` bodies as Apache Arrow IPC streams (`application/vnd.apache.arrow.stream`).

Request: one record batch stream, one row per candidate, an `id` column and one column per feature
and attribute (null = missing); the envelope (request_id, surface, context, options) is JSON in the
schema metadata key `fusionrank.request`. Numeric columns reach the encoder as float64 arrays
without a Python object per value; everything else goes through the same checks as JSON values.
Answer: one batch of the answered candidates (`id`, `rank`, `utility`, one float64 column per task);
the rest of the JSON answer (versions, filtered, debug...) is JSON in the metadata key
`fusionrank.response`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
from pydantic import ValidationError

from app.errors import InvalidRequest
from app.protocol.envelope import check_batch, validation_error
from app.protocol.schemas import ScoreEnvelope
from app.serving.columns import CandidateColumns, Column, EncodedStrings
from app.serving.scorer import ScoreInput

__all__ = ["ARROW_MEDIA_TYPE", "REQUEST_KEY", "RESPONSE_KEY", "arrow_answer", "decode_arrow_request"]

ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
REQUEST_KEY = b"fusionrank.request"
RESPONSE_KEY = b"fusionrank.response"
_STRING_TYPE_IDS = frozenset(kind.id for kind in (pa.string(), pa.large_string(), pa.string_view()))
_NUMERIC_TYPE_IDS = frozenset(
    kind.id for kind in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
                         pa.uint64(), pa.float16(), pa.float32(), pa.float64())
)


def decode_arrow_request(body: bytes, *, max_candidates: int) -> tuple[ScoreEnvelope, ScoreInput]:
    """Read an Arrow IPC stream into the envelope and columnar candidates; 422 naming what is wrong."""
    try:
        batch = _one_batch(pa.ipc.open_stream(body))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidRequest.at(
            "body", f"not an Arrow IPC stream: {exc}", "send one record batch stream (pyarrow.ipc.new_stream)"
        ) from None
    metadata = batch.schema.metadata or {}
    if REQUEST_KEY not in metadata:
        raise InvalidRequest.at(
            "schema.metadata", f"no {REQUEST_KEY.decode()!r} key",
            "put the request envelope (request_id, surface, context, options) as JSON in the schema metadata",
        )
    try:
        request = ScoreEnvelope.model_validate_json(metadata[REQUEST_KEY])
    except ValidationError as exc:
        raise validation_error(exc, prefix=f"schema.metadata[{REQUEST_KEY.decode()}]") from None
    names = batch.column_names
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InvalidRequest.at(f"columns.{duplicate}", "column sent twice", "send each column once")
    if "id" not in names:
        raise InvalidRequest.at("columns.id", "missing", "send the candidate ids as a string column `id`")
    ids = batch.column("id").to_pylist()
    check_batch(ids, max_candidates, lambda i: f"columns.id[{i}]")
    candidates = CandidateColumns(size=len(ids), columns=_columns(batch))
    context = request.context
    return request, ScoreInput(
        ids=ids, features=candidates, attributes=candidates, context_features=context.features,
        context_attributes=context.attributes, top_k=request.options.top_k,
    )


def _one_batch(reader: pa.ipc.RecordBatchStreamReader) -> pa.RecordBatch:
    """The stream as one record batch: the batch itself when it holds one (the usual case, no copy),
    else its batches concatenated (no batch at all: an empty one)."""
    batches = list(reader)
    if len(batches) == 1:
        return batches[0]
    combined = pa.Table.from_batches(batches, schema=reader.schema).combine_chunks().to_batches()
    return combined[0] if combined else pa.RecordBatch.from_pylist([], schema=reader.schema)


def _columns(batch: pa.RecordBatch) -> dict[str, Column]:
    """Integer and floating columns -> float64 [B] with NaN for null; others -> Python values.

    The numeric columns are converted together, in one C++ call (`RecordBatch.to_tensor`), into
    one column-major block whose columns are handed out as contiguous views.
    """
    schema = batch.schema
    numeric = [name for name, kind in zip(schema.names, schema.types, strict=True)
               if kind.id in _NUMERIC_TYPE_IDS and name != "id"]
    columns: dict[str, Column] = {}
    if numeric:
        chosen = batch.select(numeric)
        if chosen.num_rows:
            block = np.asarray(chosen.to_tensor(null_to_nan=True, row_major=False), dtype=np.float64).T
        else:
            block = np.empty((len(numeric), 0), dtype=np.float64)
        _refuse_nan_values(chosen, block)
        columns = dict(zip(numeric, block, strict=True))
    for name, kind in zip(schema.names, schema.types, strict=True):
        if name == "id" or name in columns:
            continue
        column = batch.column(name)
        columns[name] = _encoded(column) if kind.id in _STRING_TYPE_IDS else column.to_pylist()
    return columns


def _encoded(column: pa.Array) -> EncodedStrings:
    """A string column dictionary-encoded in C++: codes (null -> -1) and its few distinct values."""
    encoded = column.dictionary_encode()
    indices = encoded.indices.fill_null(-1) if encoded.indices.null_count else encoded.indices
    codes = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.intp)
    return EncodedStrings(codes=codes, distinct=encoded.dictionary.to_pylist())


def _refuse_nan_values(batch: pa.RecordBatch, block: npt.NDArray[np.float64]) -> None:
    """A NaN that is a value, not a null: JSON cannot carry it either, so it is refused the same way."""
    nans = np.count_nonzero(np.isnan(block), axis=1)
    if not nans.any():
        return
    for j, column in enumerate(batch.columns):
        if nans[j] > column.null_count:
            valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
            index = int(np.flatnonzero(np.isnan(block[j]) & valid)[0])
            raise InvalidRequest.at(
                f"columns.{batch.column_names[j]}[{index}]", "value is NaN", "send null for a missing value",
                candidate_index=index,
            )


def arrow_answer(answer: dict[str, Any], tasks: list[str]) -> bytes:
    """The JSON answer as an Arrow IPC stream: answered candidates as columns, the rest as metadata."""
    ranked = answer["candidates"]
    arrays: dict[str, pa.Array] = {
        "id": pa.array([c["id"] for c in ranked], type=pa.string()),
        "rank": pa.array([c["rank"] for c in ranked], type=pa.int32()),
        "utility": pa.array([c["utility"] for c in ranked], type=pa.float64()),
    }
    for task in tasks:
        arrays[task] = pa.array([c["predictions"][task] for c in ranked], type=pa.float64())
    rest = {key: value for key, value in answer.items() if key != "candidates"}
    if any("debug" in c for c in ranked):
        rest["debug"] = [c.get("debug") for c in ranked]
    batch = pa.RecordBatch.from_pydict(arrays, metadata={RESPONSE_KEY: orjson.dumps(rest)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())
