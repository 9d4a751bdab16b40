"""The service's mutable state: one reference to the current immutable snapshot, plus readiness."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anyio

from app.api.limits import AdmissionLedger
from app.api.shutdown import ShutdownDrain
from app.monitoring.dedup import RecentEventIds
from app.monitoring.metrics import ServiceMetrics
from app.monitoring.served_log import ServedLog
from app.serving.bundle import ServingSnapshot
from app.settings import Settings

__all__ = ["ServiceState"]

log = logging.getLogger("fusionrank.state")


@dataclass(eq=False)
class ServiceState:
    """Swapping `snapshot` is one reference assignment: a request that read the old one keeps it."""

    settings: Settings
    metrics: ServiceMetrics
    snapshot: ServingSnapshot = field(default_factory=lambda: ServingSnapshot(surfaces={}))
    ready: bool = False
    drain: ShutdownDrain = field(default_factory=ShutdownDrain)
    # Requests in flight and memory reserved by admitted work (app/api/limits.py); /readyz reads it.
    admission: AdmissionLedger = field(default_factory=AdmissionLedger)
    # The served and outcomes logs (FUSIONRANK_SERVED_LOG); None when off.
    served_log: ServedLog | None = None
    # Feedback event ids counted lately on this replica (a retried batch counts once).
    feedback_ids: RecentEventIds = field(init=False)
    # Worker threads `/v1/score` may use at once (settings.score_threads); waiting for one is cancellable.
    scoring_threads: anyio.CapacityLimiter = field(init=False)
    # On the event loop (the default), the turn to score: one request at a time, first come first
    # served; waiting is cancellable, and the loop reads its sockets between two turns.
    scoring_turn: anyio.Lock = field(init=False)

    def __post_init__(self) -> None:
        self.feedback_ids = RecentEventIds(
            max_ids=self.settings.feedback_dedup_ids, max_age_seconds=self.settings.feedback_dedup_seconds
        )
        self.scoring_threads = anyio.CapacityLimiter(self.settings.score_threads)
        self.scoring_turn = anyio.Lock(fast_acquire=True)  # uncontended: no extra trip through the loop

    @property
    def serving(self) -> bool:
        """Ready and not draining: what `/readyz` reports to load balancers."""
        return self.ready and not self.drain.begun

    def install(self, snapshot: ServingSnapshot) -> None:
        before = self.snapshot.surfaces
        self.snapshot = snapshot
        self.ready = bool(snapshot.surfaces)
        self.metrics.observe_snapshot(snapshot)
        self.metrics.ready.set(1 if self.ready else 0)
        for surface, route in snapshot.surfaces.items():
            served = route.binding(None)
            if surface not in before or before[surface].binding(None) is not served:
                log.info("serving surface %s: %s", surface, served.versions())
