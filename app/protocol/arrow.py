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

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from app.errors import InvalidRequest, PayloadTooLarge
from app.protocol.arrow_out import RESPONSE_KEY, arrow_answer
from app.protocol.envelope import MAX_COLUMNS, check_batch, check_context_size, too_many_candidates, validation_error
from app.protocol.ipc import DeclaredStream, declared_stream
from app.protocol.schemas import MAX_ID_LENGTH, ScoreEnvelope
from app.serving.columns import CandidateColumns, Column, EncodedStrings
from app.serving.scorer import ScoreInput

__all__ = ["ARROW_MEDIA_TYPE", "REQUEST_KEY", "RESPONSE_KEY", "arrow_answer", "decode_arrow_request"]

ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
REQUEST_KEY = b"fusionrank.request"
# A stream of many small batches costs a Python object each; clients send one.
MAX_BATCHES = 64
_CONVERSION_BYTES = 16
# Up to this many rows a string column is read as Python strings: `dictionary_encode` costs ~10 µs
# whatever the length, more than `to_pylist` and the encoders' lookups below a few hundred values.
SMALL_STRING_COLUMN = 256
_FIX = "send one record batch stream written by pyarrow.ipc.new_stream (or another Arrow IPC writer)"
_STRING_TYPE_IDS = frozenset(kind.id for kind in (pa.string(), pa.large_string(), pa.string_view()))
_PLAIN_STRING_TYPE_IDS = frozenset(kind.id for kind in (pa.string(), pa.large_string()))
_BOOL_TYPE_ID = pa.bool_().id
_NUMERIC_TYPE_IDS = frozenset(
    kind.id for kind in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
                         pa.uint64(), pa.float16(), pa.float32(), pa.float64())
)
# Column types accepted as they are (a dictionary column needs its index and value types looked at).
_PLAIN_TYPE_IDS = _NUMERIC_TYPE_IDS | _STRING_TYPE_IDS | {_BOOL_TYPE_ID}


def decode_arrow_request(
    body: bytes, *, max_candidates: int, max_decoded_bytes: int
) -> tuple[ScoreEnvelope, ScoreInput]:
    """Read an Arrow IPC stream into the envelope and columnar candidates; 413/422 naming what is wrong.

    Everything the stream declares is checked before pyarrow reads a batch: the column types (at the
    schema), the row count against `max_candidates`, and the bytes the batches take once decompressed
    and converted against `max_decoded_bytes`. Nothing is decompressed or materialised before that.
    """
    buffer = pa.py_buffer(body)  # zero-copy: batches read from the stream are views of `body`
    declared = declared_stream(buffer, max_batches=MAX_BATCHES, max_dictionaries=MAX_COLUMNS)
    if declared.columns > MAX_COLUMNS:
        raise PayloadTooLarge.at(
            "schema", f"{declared.columns} columns is more than the limit of {MAX_COLUMNS}",
            "send only the model's features and the policy's attributes",
        )
    try:
        reader = pa.ipc.open_stream(buffer)
        schema = reader.schema
        schema.names  # noqa: B018 -- decodes every column name: not UTF-8 is refused here
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest.at("body", f"not an Arrow IPC stream: {exc}", _FIX) from None
    request = _envelope(schema)
    _check_schema(schema)
    _check_declared(declared, max_candidates, max_decoded_bytes)
    try:
        batch = _one_batch(reader)
        batch.validate(full=True)  # buffers as long as the lengths say, offsets in range, valid UTF-8
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest.at("body", f"not a valid Arrow IPC stream: {exc}", _FIX) from None
    id_column = batch.column("id")
    ids = id_column.to_pylist()
    check_batch(ids, max_candidates, lambda i: f"columns.id[{i}]", strings_checked=_plain_ids(id_column))
    try:
        columns = _columns(batch)
    except pa.ArrowException as exc:  # validated above: not expected, but never a 500
        raise InvalidRequest.at("body", f"Arrow columns that cannot be converted: {exc}", _FIX) from None
    candidates = CandidateColumns(size=len(ids), columns=columns)
    context = request.context
    return request, ScoreInput(
        ids=ids, features=candidates, attributes=candidates, context_features=context.features,
        context_attributes=context.attributes, top_k=request.options.top_k, seen_ids=context.seen_ids,
        negative_feedback=context.negative_feedback,
    )


def _envelope(schema: pa.Schema) -> ScoreEnvelope:
    """The request envelope: JSON in the schema metadata key `fusionrank.request`."""
    metadata = schema.metadata or {}
    if REQUEST_KEY not in metadata:
        raise InvalidRequest.at(
            "schema.metadata", f"no {REQUEST_KEY.decode()!r} key",
            "put the request envelope (request_id, surface, context, options) as JSON in the schema metadata",
        )
    prefix = f"schema.metadata[{REQUEST_KEY.decode()}]"
    try:
        raw = orjson.loads(metadata[REQUEST_KEY])
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest.at(prefix, f"not valid JSON: {exc}", "put the envelope there as a JSON object") from None
    check_context_size(raw)
    try:
        return ScoreEnvelope.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, prefix=prefix) from None


def _check_schema(schema: pa.Schema) -> None:
    """Each column once, a string `id`, and only types a feature or an attribute can have."""
    names = schema.names
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InvalidRequest.at(f"columns.{duplicate}", "column sent twice", "send each column once")
    if "id" not in names:
        raise InvalidRequest.at("columns.id", "missing", "send the candidate ids as a string column `id`")
    for name, kind in zip(names, schema.types, strict=True):
        if kind.id in _PLAIN_TYPE_IDS and name != "id":  # the usual column: one set lookup
            continue
        if name == "id" and not _is_string(kind):
            raise InvalidRequest.at(
                "columns.id", f"type {kind} is not a string type", "send the candidate ids as a string column"
            )
        if not (_is_string(kind) or kind.id in _NUMERIC_TYPE_IDS or kind.id == _BOOL_TYPE_ID):
            raise InvalidRequest.at(
                f"columns.{name}", f"unsupported column type {kind}",
                "send numbers as an integer or floating column, categories and ids as a string (or"
                " dictionary<int, string>) column, flags as bool; null values mark missing ones; leave out"
                " a column that is missing for every candidate",
            )


def _is_string(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return pa.types.is_integer(kind.index_type) and kind.value_type.id in _STRING_TYPE_IDS
    return kind.id in _STRING_TYPE_IDS


def _check_declared(declared: DeclaredStream, max_candidates: int, max_decoded_bytes: int) -> None:
    """Row counts and decoded bytes, as the batches' metadata declares them, within the limits."""
    rows = sum(batch.rows for batch in declared.batches if not batch.dictionary)
    if rows > max_candidates:
        raise too_many_candidates("columns.id", rows, max_candidates)
    for batch in declared.batches:
        if batch.longest_node > batch.rows or batch.rows > max_candidates:
            what = "dictionary" if batch.dictionary else "column"
            raise InvalidRequest.at(
                "body", f"a {what} of {batch.longest_node} values in a batch of {batch.rows} rows", _FIX
            )
    # Buffers once decompressed, plus what the conversion allocates per value: up to two float64 (the
    # numeric block is built in pyarrow, then handed to numpy), or a code or a list slot.
    decoded = sum(batch.decoded_bytes for batch in declared.batches) + _CONVERSION_BYTES * rows * declared.columns
    if decoded > max_decoded_bytes:
        raise PayloadTooLarge.at(
            "body", f"the stream decodes to {decoded} bytes, more than the limit of {max_decoded_bytes}",
            "send fewer candidates or columns per request, or raise FUSIONRANK_MAX_DECODED_BYTES",
        )


def _plain_ids(column: pa.Array) -> bool:
    """Whether every id is a string of 1-`MAX_ID_LENGTH` characters, found in C++: a string column without
    nulls whose lengths lie in range (else `check_batch` looks at each id in Python and names the bad one).
    Below `SMALL_STRING_COLUMN` ids the two compute calls cost more than the Python checks: False."""
    if column.null_count or len(column) <= SMALL_STRING_COLUMN or column.type.id not in _PLAIN_STRING_TYPE_IDS:
        return False
    lengths = pc.min_max(pc.utf8_length(column))
    return bool(lengths["min"].as_py() > 0 and lengths["max"].as_py() <= MAX_ID_LENGTH)


def _one_batch(reader: pa.ipc.RecordBatchStreamReader) -> pa.RecordBatch:
    """The stream as one record batch: the batch itself when it holds one (the usual case, no copy),
    else its batches concatenated (no batch at all: an empty one)."""
    batches = list(reader)
    if len(batches) == 1:
        return batches[0]
    combined = pa.Table.from_batches(batches, schema=reader.schema).combine_chunks().to_batches()
    return combined[0] if combined else pa.RecordBatch.from_pylist([], schema=reader.schema)


def _columns(batch: pa.RecordBatch) -> dict[str, Column]:
    """Integer and floating columns -> float64 [B] with NaN for null; string columns -> codes into their
    distinct values; bool columns -> Python values.

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
        if pa.types.is_dictionary(kind):
            columns[name] = _dictionary_strings(column)
        else:
            small = batch.num_rows <= SMALL_STRING_COLUMN
            columns[name] = _encoded(column) if kind.id in _STRING_TYPE_IDS and not small else column.to_pylist()
    return columns


def _dictionary_strings(column: pa.DictionaryArray) -> EncodedStrings:
    """A dictionary<int, string> column as it came: its indices as codes (null -> -1), no string per row."""
    indices = column.indices.fill_null(-1) if column.indices.null_count else column.indices
    codes = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.intp)
    distinct: list[str | None] = column.dictionary.to_pylist()
    if None in distinct:  # a null dictionary value is a missing value too
        remap = np.array([-1 if v is None else i for i, v in enumerate(distinct)] + [-1], dtype=np.intp)
        codes = remap[codes]  # code -1 picks the trailing -1
    return EncodedStrings(codes=codes, distinct=["" if v is None else v for v in distinct])


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
