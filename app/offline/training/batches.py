"""Mini-batches for training, from a streamed log or from arrays in memory, with the same order.

A log is a sequence of encoded chunks (`LogSource.chunks()`): one chunk per record batch when
streaming from files, one chunk in all when in memory. Training batches come from a shuffle buffer:
the rows of one split are regrouped into blocks of exactly `buffer_rows` rows, each block is permuted
with a generator seeded by (seed, epoch, block), and batches are cut across block boundaries. The
result depends on the rows and their order only, not on how the files were chunked, which is what
makes a streamed Parquet log train the same model as the same rows in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset

from app.offline.training.encoding import SPLITS, EncodedRows, FittedEncoding, encode
from app.offline.training.tabular import TableSource

__all__ = [
    "Batch",
    "InMemoryLog",
    "LogSource",
    "ShuffledBatches",
    "StreamedLog",
    "blocks",
    "count_batches",
    "split_rows",
]


@dataclass(frozen=True)
class Batch:
    """Tensors of one mini-batch: numeric [B, N], categorical [B, C], labels/mask [B, T], weight [B], and the
    position bucket [B] when the spec has a training-only `dataset.position`."""

    numeric: torch.Tensor
    categorical: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    weight: torch.Tensor
    position: torch.Tensor | None = None

    @classmethod
    def of(cls, rows: EncodedRows) -> Batch:
        return cls(
            torch.from_numpy(rows.numeric),
            torch.from_numpy(rows.categorical),
            torch.from_numpy(rows.labels),
            torch.from_numpy(rows.mask),
            torch.from_numpy(rows.weight),
            None if rows.position is None else torch.from_numpy(rows.position),
        )


class LogSource(Protocol):
    """Something that yields encoded chunks of the whole log, once per call."""

    def chunks(self) -> Iterator[EncodedRows]: ...


@dataclass(frozen=True)
class StreamedLog:
    """Re-reads and encodes the files on every pass; memory holds one record batch at a time."""

    source: TableSource
    fitted: FittedEncoding

    def chunks(self) -> Iterator[EncodedRows]:
        for path, batch in self.source.batches():
            yield encode(batch, self.source.spec, self.fitted, path)


@dataclass(frozen=True)
class InMemoryLog:
    """The whole log encoded once (fast for logs that fit in memory)."""

    rows: EncodedRows

    @classmethod
    def load(cls, source: TableSource, fitted: FittedEncoding) -> InMemoryLog:
        return cls(EncodedRows.concat(list(StreamedLog(source, fitted).chunks())))

    def chunks(self) -> Iterator[EncodedRows]:
        yield self.rows


def split_rows(chunks: Iterable[EncodedRows], split: str) -> Iterator[EncodedRows]:
    """Only the rows of one split ("train", "valid" or "test"), chunk by chunk."""
    code = SPLITS.index(split)
    for chunk in chunks:
        keep = np.flatnonzero(chunk.split == code)
        if len(keep) == len(chunk):
            yield chunk
        elif len(keep):
            yield chunk.take(keep)


def blocks(chunks: Iterable[EncodedRows], rows: int) -> Iterator[EncodedRows]:
    """Regroup chunks into blocks of exactly `rows` rows (the last one may be shorter).

    Pieces are numpy views; only a block that spans several chunks is copied (once).
    """
    pending: list[EncodedRows] = []
    size = 0
    for chunk in chunks:
        if not len(chunk):
            continue
        pending.append(chunk)
        size += len(chunk)
        while size >= rows:
            out: list[EncodedRows] = []
            need = rows
            while need:
                head = pending[0]
                if len(head) <= need:
                    out.append(pending.pop(0))
                    need -= len(head)
                else:
                    out.append(head.slice(0, need))
                    pending[0] = head.slice(need, len(head))
                    need = 0
            size -= rows
            yield out[0] if len(out) == 1 else EncodedRows.concat(out)
    if size:
        yield pending[0] if len(pending) == 1 else EncodedRows.concat(pending)


class ShuffledBatches(IterableDataset[Batch]):
    """Training batches of one split for one epoch, through a seeded shuffle buffer."""

    def __init__(self, log: LogSource, *, split: str, batch_size: int, buffer_rows: int, seed: int, epoch: int) -> None:
        self.log = log
        self.split = split
        self.batch_size = batch_size
        self.buffer_rows = buffer_rows
        self.seed = seed
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        shuffled = (
            block.take(np.random.default_rng([self.seed, self.epoch, b]).permutation(len(block)))
            for b, block in enumerate(blocks(split_rows(self.log.chunks(), self.split), self.buffer_rows))
        )
        for batch in blocks(shuffled, self.batch_size):
            yield Batch.of(batch)


def count_batches(rows: int, batch_size: int) -> int:
    return (rows + batch_size - 1) // batch_size
