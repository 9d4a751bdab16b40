"""What an Arrow IPC stream declares, read from its message metadata before any body is touched.

pyarrow reads a record batch in one step that also decompresses its buffers, so a 25 KB zstd body
can declare 800 MB of zeros and a 300-byte body 50M rows of a null column. This module reads each
message's flatbuffer header (Arrow `Message.fbs`/`Schema.fbs`) itself: the schema's column count,
each record batch's row count, field-node lengths, buffer lengths and compression, and for a
compressed buffer the uncompressed length stored in its first 8 bytes. `declared_stream` returns
those figures so the decoder can refuse a stream before pyarrow allocates anything for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pyarrow as pa

from app.errors import InvalidRequest

__all__ = ["DeclaredBatch", "DeclaredStream", "declared_stream"]

# Message.header union tags (Message.fbs).
_SCHEMA, _DICTIONARY_BATCH, _RECORD_BATCH = 1, 2, 3
_STRUCTS = {fmt: struct.Struct(fmt) for fmt in ("<B", "<H", "<I", "<i", "<q")}
_FIX = "send one record batch stream written by pyarrow.ipc.new_stream (or another Arrow IPC writer)"


@dataclass(frozen=True, slots=True)
class DeclaredBatch:
    """One record batch (or dictionary batch) as its metadata declares it."""

    dictionary: bool
    rows: int
    longest_node: int  # the largest field-node length (a column's declared length)
    decoded_bytes: int  # buffer bytes once decompressed (the body bytes when not compressed)


@dataclass(frozen=True, slots=True)
class DeclaredStream:
    columns: int
    batches: list[DeclaredBatch]


class _Flatbuffer:
    """Bounds-checked reads of one flatbuffer (a message's metadata): a hostile offset is an error, never
    a read outside the buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _read(self, fmt: str, pos: int) -> int:
        try:
            if pos < 0:  # unpack_from would read from the end
                raise struct.error("negative offset")
            value: int = _STRUCTS[fmt].unpack_from(self.data, pos)[0]
        except struct.error:
            raise InvalidRequest.at("body", "corrupt Arrow message metadata (offset out of range)", _FIX) from None
        return value

    def root(self) -> int:
        return self._read("<I", 0)

    def _slot(self, table: int, index: int) -> int:
        """Position of field `index` of the table at `table`, or 0 when absent (its default applies)."""
        vtable = table - self._read("<i", table)
        size = self._read("<H", vtable)
        offset = 4 + 2 * index
        if offset + 2 > size:
            return 0
        field = self._read("<H", vtable + offset)
        return table + field if field else 0

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        slot = self._slot(table, index)
        return self._read(fmt, slot) if slot else default

    def table(self, table: int, index: int) -> int | None:
        slot = self._slot(table, index)
        return slot + self._read("<I", slot) if slot else None

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(position of the first element, element count) of a vector field; (0, 0) when absent."""
        slot = self._slot(table, index)
        if not slot:
            return 0, 0
        start = slot + self._read("<I", slot)
        count = self._read("<I", start)
        return start + 4, count

    def int64_structs(self, table: int, index: int) -> list[tuple[int, int]]:
        """A vector of structs of two int64 (`FieldNode`, `Buffer`) as (first, second) pairs."""
        start, count = self.vector(table, index)
        if start + 16 * count > len(self.data):
            raise InvalidRequest.at("body", "corrupt Arrow message metadata (vector out of range)", _FIX)
        return list(struct.iter_unpack("<qq", self.data[start : start + 16 * count]))


def declared_stream(body: pa.Buffer, *, max_batches: int, max_dictionaries: int) -> DeclaredStream:
    """The column count and every batch's declared size of the Arrow IPC stream in `body`.

    Reads message frames and metadata only; a compressed buffer contributes the uncompressed length in
    its 8-byte prefix, and is never decompressed. Raises `InvalidRequest` for a stream that is not one
    schema followed by record and dictionary batches, or that holds more than `max_batches` record
    batches or `max_dictionaries` dictionary batches.
    """
    reader = pa.BufferReader(body)
    columns = -1
    batches: list[DeclaredBatch] = []
    counts = {False: 0, True: 0}  # record batches, dictionary batches
    while True:
        try:
            message = pa.ipc.read_message(reader)
        except EOFError:
            break
        except (pa.ArrowException, OSError) as exc:
            raise InvalidRequest.at("body", f"not an Arrow IPC stream: {exc}", _FIX) from None
        if message is None:  # end-of-stream marker
            break
        meta = _Flatbuffer(message.metadata.to_pybytes())
        root = meta.root()
        kind = meta.scalar(root, 1, "<B")
        header = meta.table(root, 2)
        if header is None:
            raise InvalidRequest.at("body", "an Arrow message without a header", _FIX)
        if columns < 0:
            if kind != _SCHEMA:
                raise InvalidRequest.at("body", "the Arrow stream does not start with its schema", _FIX)
            columns = meta.vector(header, 1)[1]
            continue
        dictionary = kind == _DICTIONARY_BATCH
        counts[dictionary] += 1
        if counts[dictionary] > (max_dictionaries if dictionary else max_batches):
            what = f"{max_dictionaries} dictionary" if dictionary else f"{max_batches} record"
            raise InvalidRequest.at(
                "body", f"more than {what} batches", "send the candidates in one record batch (one dictionary"
                " per dictionary column)",
            )
        if dictionary:
            data = meta.table(header, 1)
            if data is None:
                raise InvalidRequest.at("body", "an Arrow dictionary batch without data", _FIX)
            batches.append(_batch(meta, data, message.body, dictionary=True))
        elif kind == _RECORD_BATCH:
            batches.append(_batch(meta, header, message.body, dictionary=False))
        else:
            raise InvalidRequest.at("body", f"unexpected Arrow message type {message.type!r}", _FIX)
    if columns < 0:
        raise InvalidRequest.at("body", "not an Arrow IPC stream: no schema message", _FIX)
    return DeclaredStream(columns=columns, batches=batches)


def _batch(meta: _Flatbuffer, batch: int, body: pa.Buffer, *, dictionary: bool) -> DeclaredBatch:
    """One RecordBatch table: length (0), nodes (1), buffers (2), compression (3)."""
    rows = meta.scalar(batch, 0, "<q")
    nodes = meta.int64_structs(batch, 1)
    buffers = meta.int64_structs(batch, 2)
    compressed = meta.table(batch, 3) is not None
    if rows < 0 or any(length < 0 or nulls < 0 for length, nulls in nodes):
        raise InvalidRequest.at("body", "an Arrow batch with a negative length", _FIX)
    decoded = 0
    for offset, length in buffers:
        if offset < 0 or length < 0 or offset + length > body.size:
            raise InvalidRequest.at("body", "an Arrow buffer outside its message body", _FIX)
        if compressed and length:
            if length < 8:
                raise InvalidRequest.at("body", "a compressed Arrow buffer without its length prefix", _FIX)
            prefix: int = struct.unpack("<q", body.slice(offset, 8).to_pybytes())[0]
            decoded += length - 8 if prefix == -1 else prefix  # -1: stored uncompressed
            if prefix < -1:
                raise InvalidRequest.at("body", "a compressed Arrow buffer with a negative length", _FIX)
        else:
            decoded += length
    return DeclaredBatch(
        dictionary=dictionary, rows=rows, longest_node=max((n for n, _ in nodes), default=0), decoded_bytes=decoded
    )
