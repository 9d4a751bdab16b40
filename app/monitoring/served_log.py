"""The served log and the outcomes log: what each sampled request served, and the outcomes fed back.

The hot path (`ServedLog.offer`, called by `AnswerMetrics.answered`) decides by a hash of the request
id whether the request is logged (`FUSIONRANK_SERVED_LOG=home:0.1,search:1.0`), then puts a reference to
the request's already-computed arrays on a bounded queue without blocking: a full queue drops the
request and counts it (`fusionrank_log_dropped_requests{reason="queue_full"}`). One writer thread gathers
runs of requests (up to `_RUN_SECONDS` or `_RUN_ROWS`), turns each run of one binding into one record batch
of `app.artifacts.served_log.served_log_schema` (one row per candidate; `app.monitoring.served_columns`)
and appends it to files partitioned surface=/date=/hour= (`app.monitoring.log_files`): on a local path,
Arrow hot files that a nice-19 child encodes as Parquet (`app.monitoring.log_compactor`), else Parquet.
`/v1/feedback` appends its accepted events to the outcomes log through the same queue and thread.
`stop()` (lifespan shutdown, i.e. the SIGTERM drain) writes what is queued, closes every file and waits
for the compactor.
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

import pyarrow as pa
import pyarrow.fs as pafs

from app.artifacts.served_log import outcomes_log_schema, served_log_schema
from app.monitoring.log_compactor import Compactor
from app.monitoring.log_files import LogFiles, open_filesystem
from app.monitoring.metrics import ServiceMetrics
from app.monitoring.served_columns import Served, ServedColumns
from app.serving.answer import Answer
from app.serving.routing import CANARY_KEY, key_value
from app.settings import Settings

__all__ = ["OutcomeRow", "ServedLog", "sampled"]

log = logging.getLogger("fusionrank.served_log")

_IDLE_SECONDS = 1.0  # the writer wakes at least this often to rotate files by age
# A run: the writer gathers requests for up to this long or this many candidate rows, then writes them at once.
_RUN_SECONDS = 0.25
_RUN_ROWS = 32_768


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
class _Outcomes:
    ts: float
    rows: Sequence[OutcomeRow]


_Item = Served | _Outcomes | None


class ServedLog:
    """Sampling, the bounded queue and the writer thread of the served and outcomes logs."""

    def __init__(
        self, rates: Mapping[str, float], path: str, *, metrics: ServiceMetrics, features: bool = False,
        queue_size: int = 256, rotate_bytes: int = 128 * 1024 * 1024, rotate_seconds: float = 300.0,
        filesystem: pafs.FileSystem | None = None, sticky_key: str = "", hot: bool = True,
    ) -> None:
        self.rates = dict(rates)
        self.sticky_key = sticky_key  # "" = follow the surface's canary key (`Answer.canary_key`), else CANARY_KEY
        self.features = features
        self.metrics = metrics
        fs, base = open_filesystem(path) if filesystem is None else (filesystem, path.rstrip("/"))
        # On a local disk the served rows go to Arrow hot files, encoded as Parquet by a low-priority child.
        self.compactor = Compactor(base) if hot and isinstance(fs, pafs.LocalFileSystem) else None
        self.served = LogFiles(
            fs, base, "served", served_log_schema(), rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds,
            on_closed=lambda _: metrics.log_files.labels("served").inc(), hot=self.compactor is not None,
            on_sealed=self.compactor.seal if self.compactor is not None else lambda _: None,
        )
        self.outcomes = LogFiles(
            fs, base, "outcomes", outcomes_log_schema(), rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds,
            on_closed=lambda _: metrics.log_files.labels("outcomes").inc(),
        )
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._columns = ServedColumns(features)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServiceMetrics) -> ServedLog | None:
        """The service's log, or None when `served_log` / `served_log_path` leave it off."""
        rates = settings.served_log_rates()
        if not rates:
            return None
        return cls(
            rates, settings.served_log_path, metrics=metrics, features=settings.served_log_features,
            queue_size=settings.served_log_queue_size, rotate_bytes=settings.served_log_rotate_bytes,
            rotate_seconds=settings.served_log_rotate_seconds, sticky_key=settings.served_log_sticky_key,
            hot=settings.served_log_compactor,
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
        sticky = key_value(envelope, self.sticky_key or answer.canary_key or CANARY_KEY)
        served = Served(
            time.time(), request_id, sticky, request.surface, answer.arm, request.candidates.ids, answer.outcome
        )
        return self._put(served, "served")

    def offer_outcomes(self, rows: Sequence[OutcomeRow]) -> bool:
        """Queue accepted feedback events for the outcomes log; True when queued."""
        return bool(rows) and self._put(_Outcomes(time.time(), rows), "outcomes")

    def _put(self, item: Served | _Outcomes, kind: str) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.metrics.log_dropped.labels(kind, "queue_full").inc()
            return False
        return True

    # -- the writer thread -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.compactor is not None:
            self.compactor.start()
        self._thread = threading.Thread(target=self._run, name="fusionrank-served-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued, close (and rename) every open file, end the thread; then let the
        compactor convert the sealed hot files (what it has not converted by `timeout` stays sealed)."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        self._queue.put(None)  # after what is queued: a blocking put, the writer is draining
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the served-log writer did not finish within %.0f s; its open files stay temporary", timeout)
        self._thread = None
        if self.compactor is not None:
            self.compactor.stop(max(1.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                self._rotate()
                continue
            items = self._collect(item)
            stop = items[-1] is None
            self._write([i for i in items if i is not None])
            if stop:
                self._close_all()
                return
            self._rotate()

    def _collect(self, item: _Item) -> list[_Item]:
        """`item` and what follows it for up to `_RUN_SECONDS` or `_RUN_ROWS` served rows: written together,
        so the Arrow calls are paid once per run, not once per request (the stop marker ends a run)."""
        items = [item]
        rows = len(item.ids) if isinstance(item, Served) else 0
        deadline = time.monotonic() + _RUN_SECONDS
        while item is not None and rows < _RUN_ROWS:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            items.append(item)
            rows += len(item.ids) if isinstance(item, Served) else 0
        return items

    def _write(self, items: list[Served | _Outcomes]) -> None:
        """Write runs of consecutive requests of one binding, surface and hour as one batch each."""
        run: list[Served] = []
        for item in items:
            if run and (not isinstance(item, Served) or _run_key(item) != _run_key(run[0])):
                self._write_served(run)
                run = []
            if isinstance(item, Served):
                run.append(item)
            else:
                self._write_outcomes(item)
        if run:
            self._write_served(run)

    def _write_served(self, run: list[Served]) -> None:
        try:
            batch = self._columns.batch(run)
            self.served.write(f"surface={run[0].surface}/{_hour_partition(run[0].ts)}", batch)
        except Exception:  # logging never fails serving; counted and logged
            log.exception("could not write the served log")
            self.metrics.log_dropped.labels("served", "write_error").inc(len(run))
            return
        self.metrics.log_rows.labels("served").inc(batch.num_rows)

    def _write_outcomes(self, item: _Outcomes) -> None:
        try:
            batch = _outcome_batch(item)
            self.outcomes.write(_hour_partition(item.ts), batch)
        except Exception:
            log.exception("could not write the outcomes log")
            self.metrics.log_dropped.labels("outcomes", "write_error").inc()
            return
        self.metrics.log_rows.labels("outcomes").inc(batch.num_rows)

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


def _run_key(item: Served) -> tuple[object, ...]:
    """Requests with equal keys are written as one batch: same binding (columns), surface, hour, features."""
    return (id(item.outcome.binding), item.surface, _hour_partition(item.ts), item.outcome.encoded is None)


def _hour_partition(ts: float) -> str:
    moment = time.gmtime(ts)
    return f"date={time.strftime('%Y-%m-%d', moment)}/hour={moment.tm_hour:02d}"


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
