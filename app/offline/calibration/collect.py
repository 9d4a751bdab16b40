"""Stream a predictions file into fit statistics and a held-out sample, in one pass.

Held-out split: a row is held out when hash(key) / 2**64 < `holdout_fraction`, where hash is
SplitMix64 of the row's key column (default `group_id`, so all candidates of one request land on the
same side; an integer key as it is, a string key through FNV-1a of its UTF-8 bytes) or, when the file
has no such column, of the row number. `holdout_fraction` 0 holds nothing out (fit on every row; the
file then has no held-out metrics). The split is
therefore deterministic and the same for every task and every run. With `holdout_split`, the rows
whose `split` column (as `fusionrank predict` writes it) equals that value are held out instead: a
split in time, e.g. fit on the validation days and measure on the later test days. Fit rows only feed the
mergeable sums (`CalibrationStats`); held-out rows are kept (raw logit, label, cell; masked rows
dropped) so that before/after metrics that need sorting (AUC, equal-mass ECE) are exact: memory
grows with the held-out fraction of the file, not with the fit part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.errors import ArtifactError
from app.offline.calibration.source import PredictionFile, TaskColumns, encode_column
from app.offline.calibration.stats import CalibrationStats, LogitGrid
from app.offline.progress import progress_bar

__all__ = ["Collected", "HeldOut", "collect", "holdout_mask", "splitmix64", "string_keys"]

Array = npt.NDArray[np.float64]
SPLIT_COLUMN = "split"  # train / valid / test, written by `fusionrank predict`


def splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The SplitMix64 finaliser (uint64 arithmetic wraps, as intended)."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def holdout_mask(keys: npt.NDArray[np.int64], fraction: float) -> npt.NDArray[np.bool_]:
    """True for held-out rows: hash(key) / 2**64 < fraction."""
    hashed = splitmix64(np.asarray(keys).astype(np.int64).view(np.uint64))
    return np.asarray((hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction)


def string_keys(values: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
    """64-bit FNV-1a of each string's UTF-8 bytes (null -> ""), as int64 keys for `holdout_mask`.

    Vectorised over rows, one byte position at a time; positions past a string's end leave its hash
    alone, so a key hashes the same whatever the other strings of its batch are.
    """
    encoded = np.array([b"" if v is None else str(v).encode("utf-8") for v in values.tolist()], dtype=np.bytes_)
    width = encoded.dtype.itemsize
    lengths = np.char.str_len(encoded) if len(encoded) else np.zeros(0, dtype=np.int64)
    as_bytes = encoded.view(np.uint8).reshape(len(encoded), width) if width else np.zeros((len(encoded), 0), np.uint8)
    h = np.full(len(encoded), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for j in range(width):
        stepped = (h ^ as_bytes[:, j].astype(np.uint64)) * prime
        h = np.where(lengths > j, stepped, h)
    return h.view(np.int64)


@dataclass(slots=True)
class HeldOut:
    """Held-out observed rows of one task: raw logits z, labels y and segment cell ids, all [R]."""

    z: Array
    y: Array
    cell: npt.NDArray[np.intp]


@dataclass(slots=True)
class Collected:
    stats: CalibrationStats
    held_out: dict[str, HeldOut]
    rows: int = 0
    held_out_rows: int = 0
    key: str | None = None
    holdout: bool = True  # False: --holdout 0, every row fits and no held-out metrics are computed
    _parts: dict[str, list[tuple[Array, Array, npt.NDArray[np.intp]]]] = field(default_factory=dict)


def collect(
    source: PredictionFile, tasks: list[TaskColumns], segments: tuple[str, ...], *,
    holdout_fraction: float, key: str | None = "group_id", grid: LogitGrid | None = None,
    show_progress: bool = True, holdout_split: str | None = None,
) -> Collected:
    """One pass over the file: fit rows into the statistics, held-out rows kept for metrics."""
    source.require(segments, "segment")
    if holdout_split is not None:
        source.require([SPLIT_COLUMN], "split")
        key = None
    use_key = key if key is not None and key in source.columns else None
    string_key = False
    if use_key is not None:
        import pyarrow as pa

        kind = source.schema.field(use_key).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ArtifactError(source.path, use_key, f"hold-out key column has type {kind}",
                                "give an integer or string key (e.g. a request id), or --holdout-key '' to split"
                                " by row")
        string_key = not pa.types.is_integer(kind)
    columns = sorted({c for t in tasks for c in (t.raw, t.label, t.mask) if c is not None}
                     | set(segments) | ({use_key} if use_key else set())
                     | ({SPLIT_COLUMN} if holdout_split is not None else set()))
    stats = CalibrationStats(tasks=tuple(t.task for t in tasks), segment_features=segments,
                             grid=grid or LogitGrid())
    described = f"{SPLIT_COLUMN} = {holdout_split}" if holdout_split is not None else use_key
    out = Collected(stats=stats, held_out={}, key=described, _parts={t.task: [] for t in tasks},
                    holdout=holdout_split is not None or holdout_fraction > 0)
    with progress_bar(show_progress) as bar:
        job = bar.add_task(f"reading {source.path.name}", total=source.rows)
        for batch in source.batches(columns):
            n = batch.num_rows
            if holdout_split is not None:
                held = np.asarray(batch.column(SPLIT_COLUMN).to_numpy(zero_copy_only=False) == holdout_split)
            elif not out.holdout:
                held = np.zeros(n, dtype=bool)
            else:
                if use_key is not None and string_key:
                    keys = string_keys(batch.column(use_key).to_numpy(zero_copy_only=False))
                elif use_key is not None:
                    keys = batch.column(use_key).to_numpy(zero_copy_only=False)
                else:
                    keys = np.arange(out.rows, out.rows + n, dtype=np.int64)
                held = holdout_mask(keys, holdout_fraction)
            encoded = [encode_column(batch, s) for s in segments]
            try:
                cells = stats.cell_ids_encoded([c for c, _ in encoded], [d for _, d in encoded], n)
            except ValueError as exc:
                raise ArtifactError(source.path, ", ".join(segments), str(exc),
                                    "segment by fewer or lower-cardinality features (not ids)") from None
            for columns_of in tasks:
                z = source.raw_logits(batch, columns_of, out.rows)
                y, w = source.observed(batch, columns_of, z, out.rows)
                stats.add(columns_of.task, z, y, np.where(held, 0.0, w), cells)
                keep = held & (w > 0)
                out._parts[columns_of.task].append((z[keep], y[keep], cells[keep]))
            out.rows += n
            out.held_out_rows += int(held.sum())
            bar.advance(job, n)
    for task in list(out._parts):
        parts = out._parts.pop(task)  # freed task by task: the copy never holds every task's rows twice
        out.held_out[task] = HeldOut(
            z=np.concatenate([p[0] for p in parts]) if parts else np.empty(0),
            y=np.concatenate([p[1] for p in parts]) if parts else np.empty(0),
            cell=np.concatenate([p[2] for p in parts]) if parts else np.empty(0, dtype=np.intp),
        )
        del parts
    return out
