"""Shadow model: a candidate triple scores a sampled share of live requests OFF the response path.

The request handler only calls `ShadowModelQueue.offer`, which samples, then puts a small job on a
bounded queue without blocking; a full queue drops the job and counts it. One daemon thread scores
the jobs on the candidate binding and compares with what was served: top-k overlap, Kendall tau
over the candidates both rank, and per-task mean shift of the calibrated predictions. A slow or
failing candidate therefore costs the live answer one `put_nowait`, never its latency.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.serving.bundle import PolicyBinding
from app.serving.cascade import score_request
from app.serving.scorer import ScoreInput

__all__ = ["ShadowJob", "ShadowModelQueue", "ShadowReport", "compare_models", "kendall_tau"]

log = logging.getLogger("fusionrank.shadow_model")


@dataclass(frozen=True, slots=True)
class ShadowJob:
    surface: str
    candidate: PolicyBinding
    served: PolicyBinding
    request: ScoreInput
    served_ranked: npt.NDArray[np.intp]
    served_probabilities: npt.NDArray[np.float64]  # [B, T] in the served model's task order


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """topk_overlap: share of the served top-k the candidate also puts in its top-k; kendall_tau over
    the candidates both answer (None under two); shifts: task -> mean(candidate p - served p)."""

    topk_overlap: float
    kendall_tau: float | None
    shifts: dict[str, float]


def kendall_tau(a: npt.NDArray[np.intp], b: npt.NDArray[np.intp]) -> float | None:
    """Kendall tau-a between two answer orders, over the candidates both contain."""
    common = np.intersect1d(a, b)
    if common.size < 2:
        return None
    rank_b = {int(c): i for i, c in enumerate(b.tolist())}
    order = np.array([rank_b[int(c)] for c in a.tolist() if int(c) in rank_b], dtype=np.int64)
    n = order.size
    diff = np.sign(order[None, :] - order[:, None])[np.triu_indices(n, k=1)]
    return float(diff.sum() / diff.size)


def compare_models(job: ShadowJob, ranked: npt.NDArray[np.intp], probabilities: npt.NDArray[np.float64],
                   tasks: list[str], served_tasks: list[str]) -> ShadowReport:
    k = len(job.served_ranked)
    overlap = 1.0 if k == 0 else len(np.intersect1d(job.served_ranked, ranked[:k])) / k
    shifts = {}
    for j, task in enumerate(served_tasks):
        if task in tasks:
            # Candidates with a NaN prediction on either side (filtered from both answers) would make the
            # shift, and the histogram sum it feeds, NaN for good: the shift is over the others.
            diff = probabilities[:, tasks.index(task)] - job.served_probabilities[:, j]
            finite = diff[np.isfinite(diff)]
            if finite.size:
                shifts[task] = float(finite.mean())
    return ShadowReport(float(overlap), kendall_tau(job.served_ranked, ranked), shifts)


class ShadowModelQueue:
    """A bounded queue and one worker thread; `on_report`/`on_drop`/`on_error` feed the metrics."""

    def __init__(
        self, capacity: int, *, on_report: Callable[[ShadowJob, ShadowReport], None],
        on_drop: Callable[[ShadowJob], None], on_error: Callable[[ShadowJob, Exception], None],
        seed: int | None = None,
    ) -> None:
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=capacity)
        self._on_report, self._on_drop, self._on_error = on_report, on_drop, on_error
        self._random = random.Random(seed)  # noqa: S311 - sampling, not security
        self._thread: threading.Thread | None = None
        self.processed = 0

    def offer(self, job: ShadowJob, fraction: float) -> bool:
        """Sample with probability `fraction`, then enqueue without blocking; True when queued."""
        if fraction <= 0 or self._random.random() >= fraction:
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._on_drop(job)
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fusionrank-shadow-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the job in hand; queued jobs are discarded."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):  # just emptied; only a racing offer could fill it
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                outcome = score_request(job.candidate, job.request)
                report = compare_models(
                    job, outcome.ranked, outcome.probabilities, job.candidate.bundle.manifest.task_names(),
                    job.served.bundle.manifest.task_names(),
                )
                self._on_report(job, report)
            except Exception as exc:  # the shadow never fails anything; it is counted and logged
                log.warning("shadow model on %s failed: %s", job.surface, exc)
                self._on_error(job, exc)
            finally:
                self.processed += 1
