"""`create_app()`: the FastAPI application. Nothing is loaded at import time; lifespan does it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio
from fastapi import FastAPI

from app import __version__
from app.api import admin, admin_models, explain, feedback, probes, score, surfaces
from app.api.budget import PARSE_AMPLIFICATION
from app.api.docs import install_docs
from app.api.errors import document_errors, install_error_handlers
from app.api.limits import AdmissionControl, AdmissionLedger, AdmissionLimits
from app.api.middleware import AccessLog, RequestContextMiddleware, RequestMetricsMiddleware
from app.api.shutdown import ShutdownDrain
from app.api.state import ServiceState
from app.control.loader import load_snapshot
from app.control.registry import Registry
from app.control.remote_store import RemoteStore
from app.control.warmup import GoldenBatch
from app.control.watcher import PolicyWatcher, fingerprint
from app.monitoring.logs import configure_logging
from app.monitoring.metrics import ServiceMetrics
from app.monitoring.psi import run_psi_updates
from app.monitoring.tracing import telemetry_config
from app.protocol.rows import decode_score_request
from app.serving.shadow_model import ShadowJob, ShadowModelQueue, ShadowReport
from app.settings import Settings, get_settings

__all__ = ["create_app"]

log = logging.getLogger("fusionrank")

_GC_GEN0_THRESHOLD = 50_000


def create_app(
    settings: Settings | None = None, *, drain: ShutdownDrain | None = None, tracer_provider: object = None
) -> FastAPI:
    """Build the app; settings default to the environment, read when the app starts.

    Traces go to `tracer_provider` (an OpenTelemetry `TracerProvider`), else where the `OTEL_*` variables
    say, else nowhere (app/monitoring/tracing.py).

    `drain` is set by `fusionrank serve` on SIGTERM (see `app.api.shutdown`); `/readyz` then answers 503.
    """
    metrics = ServiceMetrics()
    limits = AdmissionLimits()
    ledger = AdmissionLedger()  # what admitted work holds; /readyz reads it
    access = AccessLog()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        configure_logging(resolved.log_level, resolved.log_format)
        access.sample_rate = resolved.access_log_sample_rate
        state = ServiceState(settings=resolved, metrics=metrics, drain=drain or ShutdownDrain(), admission=ledger)
        _apply_admission_settings(resolved, limits, ledger, metrics)
        app.state.fusionrank = state
        remote = RemoteStore.from_settings(resolved)
        if remote is not None:  # object-store URIs: serve a local mirror of them (app/control/remote_store.py)
            await anyio.to_thread.run_sync(remote.sync)
        # Fingerprint before loading: a file changed while the snapshot loads is seen at the first poll.
        baseline = fingerprint(resolved.policies)
        snapshot = await anyio.to_thread.run_sync(
            lambda: load_snapshot(
                resolved.model_store, resolved.policies, intra_op_threads=resolved.ort_intra_op_threads
            )
        )
        golden = GoldenBatch(lambda body: decode_score_request(body, max_candidates=1_000_000)[1])
        problems = await anyio.to_thread.run_sync(lambda: golden.warm_up(snapshot))
        state.install(replace(snapshot, problems=snapshot.problems + tuple(problems)))
        if not state.ready:
            log.error("no surface is servable; /readyz answers 503 until a good bundle is loaded")
        # Start-up objects (onnxruntime, pydantic schemas, numpy) live for the whole process: move
        # them out of the collector's sight so that a full collection does not scan them per request.
        gc.collect()
        gc.freeze()
        # A row JSON request holds ~5 new containers per candidate until it ends, so at the default
        # gen0 threshold (700) a 1000-candidate request ran ~4.5 collections, and one in ~35 requests a
        # full one (bench/profiles/README.md). Above the peak of a 5000-candidate request, requests
        # free what they allocate before any collection starts; cyclic garbage still gets collected.
        thresholds = gc.get_threshold()
        gc.set_threshold(_GC_GEN0_THRESHOLD, *thresholds[1:])
        registry = Registry(state, resolved, metrics, golden)
        app.state.policy_registry = registry
        shadow_models = _shadow_model_queue(metrics, resolved.shadow_model_queue_size)
        shadow_models.start()
        app.state.shadow_models = shadow_models
        watcher = None
        if resolved.policy_watch_interval > 0:
            watcher = PolicyWatcher(
                registry, resolved.policies, resolved.policy_watch_interval, baseline=baseline, mirror=remote
            )
            watcher.start()
        app.state.policy_watcher = watcher
        admin_names = sorted(resolved.admin_credentials())
        log.info("admin API %s", f"enabled for tokens {admin_names}" if admin_names else "disabled (no token)")
        psi_updates = asyncio.create_task(
            run_psi_updates(
                metrics.served, interval_seconds=resolved.drift_psi_interval_seconds,
                window_slots=resolved.drift_psi_window_slots, min_predictions=resolved.drift_psi_min_predictions,
            ),
            name="fusionrank-psi-updates",
        )
        try:
            yield
        finally:
            state.ready = False
            gc.set_threshold(*thresholds)
            if watcher is not None:
                watcher.stop()
            shadow_models.stop()
            psi_updates.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await psi_updates

    app = FastAPI(
        title="fusionrank",
        version=__version__,
        summary="Calibrated multi-task ranking under versioned utility policies.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=telemetry_config(tracer_provider),  # type: ignore[arg-type]
    )
    install_error_handlers(app)
    install_docs(app)
    routers = (score.router, feedback.router, probes.router, admin.router, admin_models.router, surfaces.router,
               explain.router)
    for router in routers:
        app.include_router(router)
    routes = frozenset(getattr(r, "path", "") for router in routers for r in router.routes)
    # Added first, so it runs inside the metrics middleware: shed and timed-out requests are counted too.
    app.add_middleware(AdmissionControl, limits=limits, metrics=metrics, ledger=ledger)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, routes=routes)
    app.add_middleware(RequestContextMiddleware, access=access)  # outside: every line of a request has its id
    _extend_openapi(app)
    return app


def _apply_admission_settings(
    settings: Settings, limits: AdmissionLimits, ledger: AdmissionLedger, metrics: ServiceMetrics
) -> None:
    """Copy the admission settings into the middleware's limits and the ledger's memory budget."""
    limits.max_in_flight = settings.max_in_flight
    limits.deadline_seconds = settings.request_deadline_seconds
    limits.max_body_bytes = settings.max_body_bytes
    limits.body_timeout_seconds = settings.body_read_timeout_seconds
    limits.body_min_bytes_per_second = settings.body_min_bytes_per_second
    ledger.memory.budget_bytes = settings.memory_budget_bytes
    metrics.memory_budget.set(settings.memory_budget_bytes)
    largest = math.ceil(settings.max_body_bytes * max(PARSE_AMPLIFICATION.values()))
    if settings.memory_budget_bytes and largest > settings.memory_budget_bytes:
        log.warning(
            "a body of FUSIONRANK_MAX_BODY_BYTES=%d may cost %d bytes to parse, more than"
            " FUSIONRANK_MEMORY_BUDGET_BYTES=%d: such bodies are answered 413; lower the one or raise the other",
            settings.max_body_bytes, largest, settings.memory_budget_bytes,
        )


def _shadow_model_queue(metrics: ServiceMetrics, capacity: int) -> ShadowModelQueue:
    """The shadow-model worker, reporting into the service metrics (labels: the candidate's triple)."""

    def labels(job: ShadowJob) -> tuple[str, str, str, str]:
        v = job.candidate.versions()
        return job.surface, v["model_version"], v["calibration_version"], v["policy_version"]

    def on_report(job: ShadowJob, report: ShadowReport) -> None:
        metrics.shadow_model_scored.labels(*labels(job)).inc()
        metrics.shadow_model_overlap.labels(*labels(job)).observe(report.topk_overlap)
        if report.kendall_tau is not None:
            metrics.shadow_model_tau.labels(*labels(job)).observe(report.kendall_tau)
        for task, shift in report.shifts.items():
            metrics.shadow_model_shift.labels(*labels(job), task).observe(shift)

    return ShadowModelQueue(
        capacity,
        on_report=on_report,
        on_drop=lambda job: metrics.shadow_model_dropped.labels(*labels(job)).inc(),
        on_error=lambda job, _: metrics.shadow_model_errors.labels(*labels(job)).inc(),
    )


def _extend_openapi(app: FastAPI) -> None:
    """Add the ScoreRequest/FeedbackRequest schemas the hand-read bodies refer to, and the error envelope."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, body in {**score.openapi_components(), **feedback.openapi_components()}.items():
                for sub, sub_schema in body.pop("$defs", {}).items():
                    components.setdefault(sub, sub_schema)
                components[name] = body
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
