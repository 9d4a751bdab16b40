"""Partitioned, rotated Parquet files that a reader never sees half-written.

A `LogFiles` owns one open file per partition (e.g. ``surface=home/date=2026-12-06/hour=05``). Rows are
buffered and written as row groups; a file is closed once it holds `rotate_bytes` or has been open
`rotate_seconds`, or when the writer stops. A file is written under a hidden temporary name
(``.<name>.tmp``, which pyarrow's dataset discovery skips: names starting with ``.`` or ``_``) and
renamed to ``part-<utc>-<pid>-<random>.parquet`` only once closed, so a process killed mid-write leaves
at most a hidden temporary file, never a truncated ``.parquet``. Several replicas may share one root:
names carry the pid and a random part. Only the writer thread calls these methods.

With `hot=True` (the served log on a local disk) the open file is an Arrow IPC stream instead
(``.<name>.arrows.tmp``): appending a batch is a copy, with no encoding. Closed, it is renamed to the
hidden, complete ``.<name>.arrows`` ("sealed") and handed to `on_sealed`; `app.monitoring.log_compactor`
turns it into ``<name>.parquet`` at low priority. Readers still see only whole Parquet files.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from app.errors import ArtifactError

__all__ = ["HOT_SUFFIX", "LogFiles", "open_filesystem", "parquet_writer", "string_columns"]

_ROW_GROUP_ROWS = 32_768  # buffered rows per open file before a row group is encoded (bounds memory)
_STATISTICS = ("request_id", "ts", "model_version", "policy_version", "arm", "event_time", "task")
HOT_SUFFIX = ".arrows"  # a sealed hot file: ``.<name>.arrows`` becomes ``<name>.parquet``
# A hot file closes when its Arrow form reaches this many times rotate_bytes: the Parquet file it becomes
# is 20-80x smaller (dictionary-encoded keys, compression), so it still stays under rotate_bytes.
_HOT_RATIO = 8


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path of a local folder or a URI (pyarrow's own schemes, else fsspec's)."""
    if "://" not in uri:
        path = os.path.abspath(uri)
        return pafs.LocalFileSystem(), path
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        protocol, _, rest = uri.partition("://")
        try:
            import fsspec  # only for schemes pyarrow does not know

            return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(protocol))), rest.rstrip("/")
        except (ImportError, ValueError) as exc:
            raise ArtifactError(
                "FUSIONRANK_SERVED_LOG_PATH", uri, f"no file system for {protocol}:// ({exc})",
                "use a local folder, s3:// or gs:// (pyarrow), or install fsspec and its backend for this scheme",
            ) from None
    return fs, path.rstrip("/")


def string_columns(schema: pa.Schema) -> list[str]:
    """The Parquet leaf paths of `schema`'s string columns (map keys included, e.g. ``logits.key_value.key``):
    the only ones worth dictionary encoding. Floats (logits, predictions, features) rarely repeat, and a
    dictionary attempt on them costs ~10 % of the encoding for nothing."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    parquet = pq.read_metadata(pa.BufferReader(sink.getvalue())).schema
    return [parquet.column(i).path for i in range(len(parquet)) if parquet.column(i).physical_type == "BYTE_ARRAY"]


def parquet_writer(sink: Any, schema: pa.Schema) -> pq.ParquetWriter:
    """The log's Parquet settings: zstd; statistics only where readers filter (they cost ~20 % of the
    encoding on the nested columns); dictionaries on string columns only."""
    stats = [name for name in _STATISTICS if name in schema.names]
    return pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=stats,
                            use_dictionary=string_columns(schema))


@dataclass(slots=True)
class _OpenFile:
    temp: str
    final: str
    writer: pq.ParquetWriter | pa.ipc.RecordBatchStreamWriter
    stream: Any
    opened: float
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0
    pending_bytes: int = 0


class LogFiles:
    """The open files of one log kind (`served` or `outcomes`) under `<base>/<kind>/`."""

    def __init__(
        self, fs: pafs.FileSystem, base: str, kind: str, schema: pa.Schema, *, rotate_bytes: int,
        rotate_seconds: float, on_closed: Callable[[str], None] = lambda path: None,
        clock: Callable[[], float] = time.monotonic, hot: bool = False,
        on_sealed: Callable[[str], None] = lambda path: None,
    ) -> None:
        self.fs, self.root, self.schema = fs, f"{base}/{kind}", schema
        self.rotate_bytes, self.rotate_seconds = rotate_bytes, rotate_seconds
        self.on_closed, self.clock = on_closed, clock
        self.hot, self.on_sealed = hot, on_sealed
        self._open: dict[str, _OpenFile] = {}

    def write(self, partition: str, batch: pa.RecordBatch) -> None:
        """Append `batch` (of `schema`) to the partition's open file, opening or rotating as needed."""
        handle = self._open.get(partition)
        if handle is None:
            handle = self._open[partition] = self._create(partition)
        if isinstance(handle.writer, pa.ipc.RecordBatchStreamWriter):
            handle.writer.write_batch(batch)
            if handle.stream.tell() >= self.rotate_bytes * _HOT_RATIO:
                self._close(partition)
            return
        handle.pending.append(batch)
        handle.pending_rows += batch.num_rows
        handle.pending_bytes += batch.nbytes
        if handle.pending_rows >= _ROW_GROUP_ROWS:
            self._flush(handle)
        if handle.stream.tell() + handle.pending_bytes // 4 >= self.rotate_bytes:
            self._close(partition)

    def rotate_due(self) -> None:
        """Close the files open for `rotate_seconds` or longer (the writer calls it when idle, too)."""
        now = self.clock()
        for partition in [p for p, h in self._open.items() if now - h.opened >= self.rotate_seconds]:
            self._close(partition)

    def close_all(self) -> None:
        for partition in list(self._open):
            self._close(partition)

    @property
    def open_files(self) -> int:
        return len(self._open)

    def _create(self, partition: str) -> _OpenFile:
        folder = f"{self.root}/{partition}"
        self.fs.create_dir(folder, recursive=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"part-{stamp}-{os.getpid()}-{secrets.token_hex(4)}"
        if self.hot:
            sealed = f"{folder}/.{name}{HOT_SUFFIX}"
            stream = self.fs.open_output_stream(f"{sealed}.tmp")
            options = pa.ipc.IpcWriteOptions(compression="lz4")  # a third of the bytes for ~0.2 ms per 1000 rows
            writer = pa.ipc.new_stream(stream, self.schema, options=options)
            return _OpenFile(f"{sealed}.tmp", sealed, writer, stream, self.clock())
        temp, final = f"{folder}/.{name}.parquet.tmp", f"{folder}/{name}.parquet"
        stream = self.fs.open_output_stream(temp)
        return _OpenFile(temp, final, parquet_writer(stream, self.schema), stream, self.clock())

    def _flush(self, handle: _OpenFile) -> None:
        if handle.pending and isinstance(handle.writer, pq.ParquetWriter):
            handle.writer.write_table(pa.Table.from_batches(handle.pending, self.schema))
            handle.pending.clear()
            handle.pending_rows = handle.pending_bytes = 0

    def _close(self, partition: str) -> None:
        handle = self._open.pop(partition)
        try:
            self._flush(handle)
        finally:
            handle.writer.close()
            handle.stream.close()
        self.fs.move(handle.temp, handle.final)
        self.on_closed(handle.final)
        if self.hot:
            self.on_sealed(handle.final)
