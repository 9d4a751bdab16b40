"""Prometheus metrics of one service instance, on a registry of its own (tests build many apps).

With `fusionrank serve --workers N` the values live in prometheus_client's multiprocess files
(app/monitoring/multiproc.py) and every Gauge below carries the mode that merges its workers into
one replica value: `livemin` for readiness (a replica is ready when every live worker is),
`livemax` for info gauges and problem counts (a series is 1 if any live worker serves it),
`livesum` for what the workers hold now (in flight, reserved bytes, memory budget: each worker has
its own). The `live` modes drop a worker's values when it exits; counters and histograms are summed
over every worker that ran since the start. docs/scaling.md "Several workers per replica" lists them.
"""

from __future__ import annotations

import atexit
import os

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.artifacts.policy import BUILT_IN_RULES
from app.monitoring.catalog import SchemeCatalog
from app.monitoring.feedback import FeedbackCounters
from app.monitoring.multiproc import clear_gauge, exposition, multiprocess_dir, retire_process
from app.monitoring.psi import ServedPredictions
from app.monitoring.series import SeriesCache
from app.serving.bundle import PolicyBinding, ServingSnapshot

__all__ = [
    "LATENCY_BUCKETS", "OVERLAP_BUCKETS", "RANK_SHIFT_BUCKETS", "SHIFT_BUCKETS", "TAU_BUCKETS", "VERSION_LABELS",
    "ServiceMetrics",
]

# Seconds; dense where a scoring call lives (1-50 ms), sparse beyond.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5,
)

# Shadow comparison: share of the answered top-k both policies answer (1 = same set) ...
OVERLAP_BUCKETS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# ... and mean |rank under active - rank under shadow| over the candidates both answer.
RANK_SHIFT_BUCKETS = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
# Shadow model: Kendall tau between the served and the candidate order, and mean prediction shifts.
TAU_BUCKETS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
SHIFT_BUCKETS = (-0.1, -0.05, -0.02, -0.01, -0.005, -0.001, 0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1)

# The serving triple on every per-version series. Cardinality stays bounded: only the stable and
# the canary triple of each surface serve at any time, and a version only appears once activated.
VERSION_LABELS = ("surface", "arm", "model_version", "calibration_version", "policy_version")

# Label values of the refusal counters that alerts watch, primed at 0 (see `_prime_refusals`): the
# reasons app/api/auth.py counts, the sources of policy changes, the bundle changes that can be refused.
_AUTH_REASONS = ("missing", "invalid")
_POLICY_SOURCES = ("api", "watch")
_REFUSABLE_BUNDLE_ACTIONS = ("activate", "rollback", "canary", "promote", "shadow_model")


class ServiceMetrics:
    """Request, stage, guardrail, version and calibration-drift metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "fusionrank_http_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.request_latency = Histogram(
            "fusionrank_http_request_duration_seconds", "HTTP request wall time by route", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.stage_latency = Histogram(
            "fusionrank_stage_duration_seconds",
            "Wall time of each scoring stage (decode, features, inference, calibration, utility, encode)",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.candidates = Counter(
            "fusionrank_candidates_scored", "Candidates scored", ["surface"], registry=r
        )
        self.filtered = Counter(
            "fusionrank_candidates_filtered",
            "Candidates removed, by surface, stage and rule (the policy's rules, and the service's own"
            " non_finite_prediction / non_finite_utility at stage guardrail)",
            ["surface", "stage", "rule"], registry=r,
        )
        self.minimum_shortfalls = Counter(
            "fusionrank_slate_minimum_shortfalls",
            "Answers where a slate minimum (policy ranking.minimums) could not be met, by surface and rule",
            ["surface", "rule"], registry=r,
        )
        self.active = Gauge(
            "fusionrank_active_info", "1 for the (model, calibration, policy) each surface serves",
            ["surface", "model", "model_version", "calibration_version", "policy_version"],
            multiprocess_mode="livemax", registry=r,
        )
        self.ready = Gauge(
            "fusionrank_ready", "1 when a snapshot is loaded and warmed", multiprocess_mode="livemin", registry=r
        )
        self.artifact_problems = Gauge(
            "fusionrank_artifact_problems", "Artifact files left out of the serving snapshot",
            multiprocess_mode="livemax", registry=r,
        )
        self.surface_ready = Gauge(
            "fusionrank_surface_ready", "1 for a surface served, 0 for one whose files left it unserved (see"
            " /readyz problems)", ["surface"], multiprocess_mode="livemin", registry=r,
        )
        self.schemes = SchemeCatalog()
        self.feedback = FeedbackCounters(r)
        self.served = ServedPredictions()
        r.register(self.served)
        self._policies(r)
        self._admission(r)
        self._lifecycle(r)
        self._served_log(r)
        self.series = SeriesCache(self)  # the children each answer writes, resolved once per triple
        path = multiprocess_dir()
        if path is not None:  # a worker that exits drops its live gauges (uvicorn has no hook for the parent)
            atexit.register(retire_process, path, os.getpid())

    def exposition(self) -> bytes:
        """What /metrics answers: this process's registry, or every worker's values in multiprocess mode."""
        return exposition(self.registry)

    def _admission(self, r: CollectorRegistry) -> None:
        """Load shedding, deadlines and feedback de-duplication (labels: fixed route names)."""
        self.in_flight = Gauge(
            "fusionrank_in_flight_requests", "Work requests (/v1/score, /v1/feedback) running now",
            multiprocess_mode="livesum", registry=r,
        )
        self.shed = Counter(
            "fusionrank_requests_shed", "Work requests answered 503 at once because max_in_flight were running",
            ["route"], registry=r,
        )
        self.deadline_exceeded = Counter(
            "fusionrank_deadline_exceeded", "Work requests answered 504: their deadline passed, work abandoned",
            ["route"], registry=r,
        )
        self.shed_memory = Counter(
            "fusionrank_requests_shed_memory",
            "Work requests answered 503 before their body was parsed: its parse cost did not fit in the memory"
            " budget beside the bodies admitted (FUSIONRANK_MEMORY_BUDGET_BYTES)", ["route"], registry=r,
        )
        self.reserved_bytes = Gauge(
            "fusionrank_admission_reserved_bytes",
            "Memory reserved now by admitted work requests: body bytes x the format's parse amplification",
            multiprocess_mode="livesum", registry=r,
        )
        self.memory_budget = Gauge(
            "fusionrank_admission_memory_budget_bytes",
            "The memory budget of admitted work (0: none); with several workers, the sum of theirs",
            multiprocess_mode="livesum", registry=r,
        )
        self.body_late = Counter(
            "fusionrank_request_bodies_late",
            "Work request bodies answered 408 and cut: past the read timeout, or below the minimum rate",
            ["route", "reason"], registry=r,
        )
        self.client_closed = Counter(
            "fusionrank_client_closed_requests",
            "Requests whose client closed the connection before the answer (also counted as status 499)",
            ["route"], registry=r,
        )
        self.feedback_duplicates = Counter(
            "fusionrank_feedback_duplicate_events",
            "Feedback events not counted again: their id was counted within the de-duplication window",
            registry=r,
        )

    def _served_log(self, r: CollectorRegistry) -> None:
        """The served and outcomes logs (app/monitoring/served_log.py); kind: served | outcomes."""
        self.log_rows = Counter(
            "fusionrank_log_rows", "Rows written to the served/outcomes log (in files closed or still open)",
            ["kind"], registry=r,
        )
        self.log_dropped = Counter(
            "fusionrank_log_dropped_requests",
            "Requests (or feedback batches) whose rows were not logged: queue_full (the writer fell behind; the"
            " answer never waits) or write_error", ["kind", "reason"], registry=r,
        )
        self.log_files = Counter(
            "fusionrank_log_files", "Log files closed and renamed to their final name", ["kind"], registry=r
        )
        for kind in ("served", "outcomes"):
            self.log_rows.labels(kind)
            self.log_files.labels(kind)
            for reason in ("queue_full", "write_error"):
                self.log_dropped.labels(kind, reason)

    def _lifecycle(self, r: CollectorRegistry) -> None:
        """Per-triple serving metrics (stable vs canary side by side), rollouts and the shadow model."""
        self.served_requests = Counter(
            "fusionrank_served_requests", "Score requests by the triple that answered them (arm: stable | canary)",
            VERSION_LABELS, registry=r,
        )
        self.served_candidates = Counter(
            "fusionrank_served_candidates", "Candidates scored, by the triple that scored them", VERSION_LABELS,
            registry=r,
        )
        self.served_latency = Histogram(
            "fusionrank_served_scoring_duration_seconds",
            "Scoring wall time (features to slate) by the triple that answered", VERSION_LABELS,
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.served_utility = Histogram(
            "fusionrank_served_top_utility", "Utility of the first answered candidate, by triple", VERSION_LABELS,
            buckets=(-1.0, 0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0), registry=r,
        )
        self.canary_info = Gauge(
            "fusionrank_canary_fraction", "Share of unpinned traffic a surface routes to its canary triple",
            ["surface", "model_version", "calibration_version", "policy_version"], multiprocess_mode="livemax",
            registry=r,
        )
        self.bundle_activations = Counter(
            "fusionrank_bundle_activations",
            "Triple changes applied (activate, rollback, canary, promote, abort, shadow_model)", ["surface", "action"],
            registry=r,
        )
        self.bundle_activation_failures = Counter(
            "fusionrank_bundle_activation_failures", "Triple changes refused; the surface kept what it served",
            ["surface", "action"], registry=r,
        )
        shadow = ["surface", "model_version", "calibration_version", "policy_version"]
        self.shadow_model_scored = Counter(
            "fusionrank_shadow_model_scored", "Requests the shadow model scored and compared", shadow, registry=r
        )
        self.shadow_model_dropped = Counter(
            "fusionrank_shadow_model_dropped", "Sampled requests dropped because the shadow queue was full", shadow,
            registry=r,
        )
        self.shadow_model_errors = Counter(
            "fusionrank_shadow_model_errors", "Shadow-model scorings that failed (the answer is unaffected)", shadow,
            registry=r,
        )
        self.shadow_model_overlap = Histogram(
            "fusionrank_shadow_model_topk_overlap", "Share of the served top-k the shadow model also ranks top-k",
            shadow, buckets=OVERLAP_BUCKETS, registry=r,
        )
        self.shadow_model_tau = Histogram(
            "fusionrank_shadow_model_kendall_tau", "Kendall tau, served vs shadow-model order", shadow,
            buckets=TAU_BUCKETS, registry=r,
        )
        self.shadow_model_shift = Histogram(
            "fusionrank_shadow_model_prediction_shift", "Mean calibrated prediction shift per task, shadow - served",
            [*shadow, "task"], buckets=SHIFT_BUCKETS, registry=r,
        )

    def observe_triple(
        self, surface: str, arm: str, binding: PolicyBinding, candidates: int, seconds: float,
        top_utility: float | None,
    ) -> None:
        """One answered request, labelled with the triple that answered it."""
        v = binding.versions()
        labels = (surface, arm, v["model_version"], v["calibration_version"], v["policy_version"])
        self.served_requests.labels(*labels).inc()
        self.served_candidates.labels(*labels).inc(candidates)
        self.served_latency.labels(*labels).observe(seconds)
        if top_utility is not None:
            self.served_utility.labels(*labels).observe(top_utility)

    def _policies(self, r: CollectorRegistry) -> None:
        """Policy registry, admin API and shadow metrics (labels: surfaces and versions, both bounded)."""
        self.policy_active = Gauge(
            "fusionrank_policy_active_info", "1 for the policy version each surface serves", ["surface", "version"],
            multiprocess_mode="livemax", registry=r,
        )
        self.policy_shadow = Gauge(
            "fusionrank_policy_shadow_info", "1 for the shadow policy version of a surface", ["surface", "version"],
            multiprocess_mode="livemax", registry=r,
        )
        self.policy_activations = Counter(
            "fusionrank_policy_activations", "Policy changes applied (activate, rollback, reload, shadow)",
            ["surface", "source"], registry=r,
        )
        self.policy_activation_failures = Counter(
            "fusionrank_policy_activation_failures", "Policy changes refused; the old policy stayed active",
            ["surface", "source"], registry=r,
        )
        self.policy_file_rejections = Counter(
            "fusionrank_policy_file_rejections", "New or changed policy files the watcher found invalid",
            ["surface"], registry=r,
        )
        self.policy_watch_failures = Counter(
            "fusionrank_policy_watch_failures", "Watcher passes over a surface folder that failed (logged once per"
            " reason); the surface kept what it served and later edits are still applied", ["surface"], registry=r,
        )
        self.rollout_generation = Gauge(
            "fusionrank_rollout_generation", "Generation of the declared rollout state"
            " (policies/<surface>/rollout.yaml) this process serves; replicas that disagree for long are"
            " half-applied", ["surface"], registry=r, multiprocess_mode="livemin",
        )
        self.rollout_refusals = Counter(
            "fusionrank_rollout_refusals", "Declared rollout files refused (invalid file, unservable triple, golden"
            " batch); the surface kept its last good state (see /readyz problems)", ["surface"], registry=r,
        )
        self.admin_auth_failures = Counter(
            "fusionrank_admin_auth_failures", "Admin requests refused for a missing or wrong token", ["reason"],
            registry=r,
        )
        for reason in _AUTH_REASONS:
            self.admin_auth_failures.labels(reason)
        self.shadow_scored = Counter(
            "fusionrank_shadow_requests", "Requests also ranked under the surface's shadow policy",
            ["surface", "shadow_version"], registry=r,
        )
        self.shadow_errors = Counter(
            "fusionrank_shadow_errors", "Requests the shadow policy could not rank (the answer is unaffected)",
            ["surface", "shadow_version"], registry=r,
        )
        self.shadow_overlap = Histogram(
            "fusionrank_shadow_topk_overlap", "Share of the answered candidates the shadow policy also answers",
            ["surface", "shadow_version"], buckets=OVERLAP_BUCKETS, registry=r,
        )
        self.shadow_rank_shift = Histogram(
            "fusionrank_shadow_mean_rank_shift", "Mean absolute rank difference, active vs shadow policy",
            ["surface", "shadow_version"], buckets=RANK_SHIFT_BUCKETS, registry=r,
        )

    def observe_snapshot(self, snapshot: ServingSnapshot) -> None:
        self.series.clear()
        clear_gauge(self.active)
        for surface, route in snapshot.surfaces.items():
            versions = route.binding(None).versions()
            self.active.labels(surface=surface, **versions).set(1)
        self.artifact_problems.set(len(snapshot.problems))
        clear_gauge(self.surface_ready)
        for surface in snapshot.surfaces:
            self.surface_ready.labels(surface).set(1)
        for surface in snapshot.unserved:
            self.surface_ready.labels(surface).set(0)
        clear_gauge(self.policy_active)
        clear_gauge(self.policy_shadow)
        for surface, route in snapshot.surfaces.items():
            self.policy_active.labels(surface, route.active).set(1)
            if route.shadow is not None:
                self.policy_shadow.labels(surface, route.shadow).set(1)
        for surface in snapshot.surfaces:
            self._prime_refusals(surface)
        clear_gauge(self.canary_info)
        for surface, route in snapshot.surfaces.items():
            if route.canary is not None:
                v = route.canary.binding.versions()
                self.canary_info.labels(
                    surface, v["model_version"], v["calibration_version"], v["policy_version"]
                ).set(route.canary.fraction)
        # Every servable binding's drift series exist from the start, at zero (see FeedbackCounters.prime).
        for route in snapshot.surfaces.values():
            for binding in route.bindings():
                scheme = self.schemes.of(binding.bundle.manifest, binding.calibration.file)
                self.feedback.prime(scheme)
                self.served.prime(scheme)

    def _prime_refusals(self, surface: str) -> None:
        """Create a surface's refusal series at 0. A counter series first seen at 1 has no increase() in
        Prometheus, so without this a replica's first refused swap would never alert."""
        for source in _POLICY_SOURCES:
            self.policy_activation_failures.labels(surface, source)
        for action in _REFUSABLE_BUNDLE_ACTIONS:
            self.bundle_activation_failures.labels(surface, action)
        self.policy_file_rejections.labels(surface)
        # Candidates a surface could not rank (NaN prediction or non-finite utility): watched, so primed.
        for rule in BUILT_IN_RULES:
            self.filtered.labels(surface, "guardrail", rule)
        self.policy_watch_failures.labels(surface)
        self.rollout_refusals.labels(surface)

    def observe_served(
        self, binding: PolicyBinding, probabilities: npt.NDArray[np.float64], arm: str = "stable"
    ) -> None:
        """Count one request's calibrated predictions [B, T] (manifest task order), served by `arm`, for drift."""
        self.served.observe(self.schemes.of(binding.bundle.manifest, binding.calibration.file), probabilities, arm)
