"""The served log and the outcomes log: what each sampled request served, and the outcomes fed back.

The hot path (`ServedLog.offer`, called by `AnswerMetrics.answered`) decides by a hash of the request
id whether the request is logged (`FUSIONRANK_SERVED_LOG=home:0.1,search:1.0`), then puts a reference to
the request's already-computed arrays on a bounded queue without blocking: a full queue drops the
request and counts it (`fusionrank_log_dropped_requests{reason="queue_full"}`). One writer thread turns
each request into Arrow columns of `app.artifacts.served_log.served_log_schema` (one row per
candidate) and appends them to Parquet files partitioned surface=/date=/hour= (`app.monitoring.log_files`).
`/v1/feedback` appends its accepted events to the outcomes log through the same queue and thread.
`stop()` (lifespan shutdown, i.e. the SIGTERM drain) writes what is queued and closes every file.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from app.artifacts.served_log import TOP_K_RULE, outcomes_log_schema, served_log_schema
from app.monitoring.log_files import LogFiles, open_filesystem
from app.monitoring.metrics import ServiceMetrics
from app.serving.answer import Answer
from app.serving.routing import CANARY_KEY, key_value
from app.serving.scorer import ScoreOutcome
from app.settings import Settings

__all__ = ["OutcomeRow", "ServedLog", "sampled"]

log = logging.getLogger("fusionrank.served_log")

_IDLE_SECONDS = 1.0  # the writer wakes at least this often to rotate files by age


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is logged: blake2b(request_id) read as a uniform number in [0, 1) is below `rate`
    (the same answer on every replica and every retry)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < rate


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One accepted `/v1/feedback` event, as the outcomes log stores it."""

    event_id: str
    request_id: str | None
    candidate_id: str | None
    task: str
    label: int
    event_time: datetime
    prediction: float
    model: str
    model_version: str
    calibration_version: str


@dataclass(frozen=True, slots=True)
class _Served:
    """What the writer needs of one answer: its arrays and ids, not the request's candidate rows (memory)."""

    ts: float  # epoch seconds
    request_id: str
    sticky_key: str | None
    surface: str
    arm: str
    ids: Sequence[object]
    outcome: ScoreOutcome


@dataclass(frozen=True, slots=True)
class _Outcomes:
    ts: float
    rows: Sequence[OutcomeRow]


_Item = _Served | _Outcomes | None


class ServedLog:
    """Sampling, the bounded queue and the writer thread of the served and outcomes logs."""

    def __init__(
        self, rates: Mapping[str, float], path: str, *, metrics: ServiceMetrics, features: bool = False,
        queue_size: int = 256, rotate_bytes: int = 128 * 1024 * 1024, rotate_seconds: float = 300.0,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        self.rates = dict(rates)
        self.features = features
        self.metrics = metrics
        fs, base = open_filesystem(path) if filesystem is None else (filesystem, path.rstrip("/"))
        self.served = LogFiles(
            fs, base, "served", served_log_schema(), rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds,
            on_closed=lambda _: metrics.log_files.labels("served").inc(),
        )
        self.outcomes = LogFiles(
            fs, base, "outcomes", outcomes_log_schema(), rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds,
            on_closed=lambda _: metrics.log_files.labels("outcomes").inc(),
        )
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._columns = _ServedColumns(features)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServiceMetrics) -> ServedLog | None:
        """The service's log, or None when `served_log` / `served_log_path` leave it off."""
        rates = settings.served_log_rates()
        if not rates:
            return None
        return cls(
            rates, settings.served_log_path, metrics=metrics, features=settings.served_log_features,
            queue_size=settings.served_log_queue_size, rotate_bytes=settings.served_log_rotate_bytes,
            rotate_seconds=settings.served_log_rotate_seconds,
        )

    def rate(self, surface: str) -> float:
        return self.rates.get(surface, self.rates.get("*", 0.0))

    # -- the hot path: no I/O, no Arrow, never blocks ------------------------------------------------

    def offer(self, answer: Answer) -> bool:
        """Queue a scored request if its surface is logged and its request id sampled; True when queued."""
        request = answer.request
        envelope = request.envelope
        request_id = getattr(envelope, "request_id", None)
        if not isinstance(request_id, str) or not sampled(request_id, self.rate(request.surface)):
            return False
        sticky = key_value(envelope, CANARY_KEY)  # the user key canaries stick by by default
        served = _Served(
            time.time(), request_id, sticky, request.surface, answer.arm, request.candidates.ids, answer.outcome
        )
        return self._put(served, "served")

    def offer_outcomes(self, rows: Sequence[OutcomeRow]) -> bool:
        """Queue accepted feedback events for the outcomes log; True when queued."""
        return bool(rows) and self._put(_Outcomes(time.time(), rows), "outcomes")

    def _put(self, item: _Served | _Outcomes, kind: str) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.metrics.log_dropped.labels(kind, "queue_full").inc()
            return False
        return True

    # -- the writer thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fusionrank-served-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued, close (and rename) every open file, end the thread."""
        if self._thread is None:
            return
        self._queue.put(None)  # after what is queued: a blocking put, the writer is draining
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the served-log writer did not finish within %.0f s; its open files stay temporary", timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                self._rotate()
                continue
            if item is None:
                self._close_all()
                return
            self._write(item)
            self._rotate()

    def _write(self, item: _Served | _Outcomes) -> None:
        kind = "served" if isinstance(item, _Served) else "outcomes"
        try:
            if isinstance(item, _Served):
                batch = self._columns.batch(item)
                partition = f"surface={item.surface}/{_hour_partition(item.ts)}"
                self.served.write(partition, batch)
            else:
                batch = _outcome_batch(item)
                self.outcomes.write(_hour_partition(item.ts), batch)
        except Exception:  # logging never fails serving; counted and logged
            log.exception("could not write the %s log", kind)
            self.metrics.log_dropped.labels(kind, "write_error").inc()
            return
        self.metrics.log_rows.labels(kind).inc(batch.num_rows)

    def _rotate(self) -> None:
        for files in (self.served, self.outcomes):
            try:
                files.rotate_due()
            except Exception:
                log.exception("could not close a %s log file", files.root)

    def _close_all(self) -> None:
        for files in (self.served, self.outcomes):
            try:
                files.close_all()
            except Exception:
                log.exception("could not close the %s log files", files.root)


def _hour_partition(ts: float) -> str:
    moment = time.gmtime(ts)
    return f"date={time.strftime('%Y-%m-%d', moment)}/hour={moment.tm_hour:02d}"


def _timestamps(ts: float, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(int(ts * 1_000_000), pa.timestamp("us", tz="UTC")), n)


def _float_map(keys: pa.Array, values: npt.NDArray[np.floating]) -> pa.MapArray:
    """values [B, K] -> a map array of B rows {keys[k]: values[b, k]}."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    names = pc.take(keys, pa.array(np.tile(np.arange(k, dtype=np.int32), n)))
    return pa.MapArray.from_arrays(offsets, names, pa.array(values.astype(np.float64, copy=False).ravel()))


class _Vocabularies:
    """Per model version: feature names and one flat array of every vocabulary (index 1 + v of feature j
    is `flat[base[j] + v]`), so categorical indices become strings with one `take`."""

    def __init__(self, numeric: list[str], categorical: list[str], vocabularies: list[dict[str, int]]) -> None:
        self.numeric = pa.array(numeric, pa.string())
        self.categorical = pa.array(categorical, pa.string())
        values = [v for vocabulary in vocabularies for v in sorted(vocabulary, key=vocabulary.__getitem__)]
        sizes = [len(v) for v in vocabularies]
        self.base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else np.zeros(0, np.int64)
        self.flat = pa.array(values, pa.string())


class _ServedColumns:
    """Turns a logged request into a record batch of the served schema (the writer thread's work)."""

    def __init__(self, features: bool) -> None:
        self.features = features
        self.schema = served_log_schema()
        self._names: dict[tuple[str, ...], pa.Array] = {}
        self._vocabularies: dict[tuple[str, str], _Vocabularies] = {}

    def _keys(self, names: Sequence[str]) -> pa.Array:
        key = tuple(names)
        found = self._names.get(key)
        if found is None:
            found = self._names[key] = pa.array(list(names), pa.string())
        return found

    def batch(self, item: _Served) -> pa.RecordBatch:
        outcome = item.outcome
        binding = outcome.binding
        versions = binding.versions()
        ids = item.ids
        n = len(ids)
        position = np.full(n, -1, dtype=np.int32)
        position[outcome.ranked] = np.arange(outcome.ranked.size, dtype=np.int32)
        rule = np.full(n, -1, dtype=np.int32)
        stage = np.full(n, -1, dtype=np.int32)
        rules: list[str] = []
        stages = ["guardrail", "slate"]
        for group in outcome.filtered:
            rules.append(group.rule)
            rule[group.indices] = len(rules) - 1
            stage[group.indices] = stages.index(group.stage) if group.stage in stages else 0
        past_top_k = (position < 0) & (rule < 0)  # survivors ranked past top_k: not served, no rule removed them
        if past_top_k.any():
            rules.append(TOP_K_RULE)
            rule[past_top_k] = len(rules) - 1
            stage[past_top_k] = 1

        def repeat(value: str | None) -> pa.Array:
            return pa.repeat(pa.scalar(value, pa.string()), n)

        tasks = self._keys(binding.bundle.manifest.task_names())
        terms = self._keys(binding.policy.term_names)
        numeric, categorical = self._features(item, n)
        columns = [
            repeat(item.request_id), _timestamps(item.ts, n), _surface(item.surface, n), repeat(item.sticky_key),
            repeat(versions["model"]), repeat(versions["model_version"]), repeat(versions["calibration_version"]),
            repeat(versions["policy_version"]), repeat(item.arm),
            _strings(ids), pa.array(np.arange(n, dtype=np.int32)),
            pa.array(position, mask=position < 0),
            _pick(stages, stage), _pick(rules, rule),
            _float_map(tasks, outcome.logits), _float_map(tasks, outcome.probabilities),
            pa.array(outcome.utility), _propensity(outcome.propensity, outcome.ranked, position),
            _float_map(terms, outcome.contributions), numeric, categorical,
            *self._attributes(outcome.binding.policy.file.attributes, outcome.attributes, n),
        ]
        batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        trace = outcome.cascade
        if trace is not None and trace.cut.size:  # cut by the first stage: never scored by the model, not logged
            keep = np.ones(n, dtype=bool)
            keep[trace.cut] = False
            batch = batch.filter(pa.array(keep))
        return batch

    def _attributes(self, declared: Mapping[str, str], columns: Mapping[str, object], n: int) -> list[pa.Array]:
        """Three maps (number, string, boolean) of the declared attributes; a missing value is left out."""
        out = []
        for kind, value_type in (("number", pa.float64()), ("string", pa.string()), ("boolean", pa.bool_())):
            names = [name for name, k in declared.items() if k == kind and name in columns]
            if not names:
                out.append(_empty_maps(n, value_type))
                continue
            k = len(names)
            # One column per attribute, converted in C, then interleaved row-major with one take.
            stacked = pa.concat_arrays([_attribute_array(columns[name], value_type) for name in names])
            order = (np.arange(k, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None]).ravel()
            values = pc.take(stacked, pa.array(order))
            keys = pc.take(self._keys(names), pa.array(np.tile(np.arange(k, dtype=np.int32), n)))
            present = pc.is_valid(values).to_numpy(zero_copy_only=False)
            counts = present.reshape(n, k).sum(axis=1)
            offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
            keep = pa.array(present)
            out.append(pa.MapArray.from_arrays(offsets, keys.filter(keep), values.filter(keep)))
        return out

    def _features(self, item: _Served, n: int) -> tuple[pa.Array, pa.Array]:
        outcome = item.outcome
        encoded = outcome.encoded
        if not self.features or encoded is None:
            return pa.nulls(n, self.schema.field("features_numeric").type), pa.nulls(
                n, self.schema.field("features_categorical").type
            )
        encoder = outcome.binding.bundle.encoder
        manifest = outcome.binding.bundle.manifest
        key = (manifest.name, manifest.version)
        vocab = self._vocabularies.get(key)
        if vocab is None:
            vocab = self._vocabularies[key] = _Vocabularies(
                encoder.numeric_names, encoder.categorical_names, encoder.vocabularies
            )
        numeric = _float_map(vocab.numeric, encoded.numeric)
        codes = encoded.categorical  # [B, C], 0 = out of vocabulary
        c = codes.shape[1]
        flat_index = (codes - 1 + vocab.base[None, :]).ravel()
        oov = (codes == 0).ravel()
        values = pc.take(vocab.flat, pa.array(np.where(oov, 0, flat_index), mask=oov)) if c else pa.array(
            [], pa.string()
        )
        offsets = pa.array(np.arange(0, n * c + 1, c, dtype=np.int32))
        names = pc.take(vocab.categorical, pa.array(np.tile(np.arange(c, dtype=np.int32), n)))
        return numeric, pa.MapArray.from_arrays(offsets, names, values)


def _attribute_array(column: object, value_type: pa.DataType) -> pa.Array:
    """An attribute column as read (float64 with NaN for missing, or a list with None) as an Arrow array."""
    if isinstance(column, np.ndarray):
        return pa.array(column, value_type, mask=np.isnan(column) if column.dtype.kind == "f" else None)
    return pa.array(column, value_type)


def _empty_maps(n: int, value_type: pa.DataType) -> pa.MapArray:
    return pa.MapArray.from_arrays(
        pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()), pa.array([], value_type)
    )


def _surface(surface: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([surface], pa.string()))


def _strings(ids: Sequence[object]) -> pa.Array:
    if isinstance(ids, pa.Array | pa.ChunkedArray):
        column = ids.cast(pa.string())
        return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pa.array([str(i) for i in ids] if ids and not isinstance(ids[0], str) else list(ids), pa.string())


def _pick(names: list[str], index: npt.NDArray[np.int32]) -> pa.Array:
    """names[index] per row, null where index < 0."""
    if not names:
        return pa.nulls(index.size, pa.string())
    return pc.take(pa.array(names, pa.string()), pa.array(index, mask=index < 0))


def _outcome_batch(item: _Outcomes) -> pa.RecordBatch:
    rows = item.rows
    received = datetime.fromtimestamp(item.ts, UTC)
    columns = {
        "event_id": [r.event_id for r in rows],
        "request_id": [r.request_id for r in rows],
        "candidate_id": [r.candidate_id for r in rows],
        "task": [r.task for r in rows],
        "label": [r.label for r in rows],
        "event_time": [r.event_time for r in rows],
        "prediction": [r.prediction for r in rows],
        "model": [r.model for r in rows],
        "model_version": [r.model_version for r in rows],
        "calibration_version": [r.calibration_version for r in rows],
        "received_at": [received] * len(rows),
    }
    return pa.RecordBatch.from_pydict(columns, schema=outcomes_log_schema())


def _propensity(propensity: npt.NDArray[np.float64] | None, ranked: npt.NDArray[np.intp],
                position: npt.NDArray[np.int32]) -> pa.Array:
    """The logging policy's probability of each served candidate at its position given the ones above it
    (`ScoreOutcome.propensity`; 1.0 when the policy does not explore), null for the rows not served."""
    values = np.ones(len(position))
    if propensity is not None:
        values[ranked] = propensity
    return pa.array(values, mask=position < 0)
