"""OpenTelemetry traces, opt-in: the `tracing` extra and the standard `OTEL_*` variables.

On when the extra is installed (`pip install -e '.[tracing]'`) and the environment asks for traces:
`OTEL_TRACES_EXPORTER` set to `otlp` (OTLP over HTTP/protobuf, `OTEL_EXPORTER_OTLP_ENDPOINT` & co.) or
`console`, or, without it, `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set;
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off. The SDK reads the rest itself
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, ...).

When on: a server span per HTTP request (FastAPI's own OpenTelemetry support, `FastAPI(telemetry=...)`;
an incoming W3C `traceparent` makes it a child of the caller's span), and for `/v1/score` one child span per stage
(decode, features, model, calibration, compose, encode) with the surface, the versions, the arm and
the candidate count as attributes on the server span. The stage spans are written after the fact from
the timings the scoring path takes anyway, so the hot path runs no tracing code per stage.

When off, `stage_spans` is None (the scoring route's cost: one module attribute read), fusionrank imports
nothing of the SDK, and FastAPI's telemetry is configured off (FastAPI itself imports opentelemetry-api,
a dependency of FastAPI >= 0.16x, whether or not traces are on).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from app import __version__

if TYPE_CHECKING:
    from app.serving.answer import Answer

__all__ = ["StageSpans", "stage_spans", "telemetry_config", "tracing_requested"]

log = logging.getLogger("fusionrank.tracing")

# (answer, t_start, t_decoded, t_answered, t_encoded): perf_counter() seconds of the request's stage bounds.
StageSpans = Callable[["Answer", float, float, float, float], None]

# Set by `install_tracing`; None while tracing is off. Read by the scoring route once per request.
stage_spans: StageSpans | None = None

_SCORER_STAGES = (("features", "features"), ("inference", "model"), ("calibration", "calibration"),
                  ("utility", "compose"))


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the `OTEL_*` variables ask for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER")
    if exporter is not None and exporter.strip():
        return exporter.strip().lower() != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def telemetry_config(provider: Any = None) -> dict[str, Any]:
    """`FastAPI(telemetry=...)`: FastAPI's own OpenTelemetry server spans into `provider` (default: one
    built from the `OTEL_*` variables when they ask for traces), or everything off.

    Off (no provider, nothing asked, or the extra missing) also spares FastAPI's per-request check for a
    configured global provider. On, FastAPI's metrics and logs stay off (Prometheus and the JSON logs
    cover them) and so do its per-operation spans: the stage spans say where the time went.
    """
    global stage_spans
    off = {"tracing": False, "metrics": False, "logs": False}
    if provider is None:
        if not tracing_requested():
            stage_spans = None
            return off
        try:
            provider = _provider_from_environment()
        except ImportError:
            log.warning(
                "OTEL_* variables ask for traces but the tracing extra is not installed: no traces;"
                " install the tracing extra (`pip install -e '.[tracing]'` in a checkout) or unset OTEL_TRACES_EXPORTER"
                " and OTEL_EXPORTER_OTLP_ENDPOINT"
            )
            stage_spans = None
            return off
    stage_spans = _stage_recorder(provider.get_tracer("fusionrank", __version__))
    return {**off, "tracing": True, "tracer_provider": provider, "operation_spans": False}


def _provider_from_environment() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    attributes = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "fusionrank"
    provider = TracerProvider(resource=Resource.create(attributes))
    kind = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: fusionrank exports OTLP over http/protobuf only;"
                " set it to http/protobuf (port 4318 on a collector) or unset it"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind}: fusionrank supports otlp, console or none")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on: exporter %s", kind)
    return provider


def _stage_recorder(tracer: Any) -> StageSpans:
    from opentelemetry import trace

    def record(answer: Answer, t_start: float, t_decoded: float, t_answered: float, t_encoded: float) -> None:
        # perf_counter seconds -> epoch nanoseconds (the clocks' offset, taken now: drift is negligible)
        offset = time.time_ns() - time.perf_counter_ns()

        def span(name: str, start: float, end: float) -> None:
            tracer.start_span(name, start_time=int(start * 1e9) + offset).end(end_time=int(end * 1e9) + offset)

        outcome = answer.outcome
        attributes: dict[str, str | int] = {
            f"fusionrank.{key}": value for key, value in outcome.binding.versions().items()
        }
        attributes.update({
            "fusionrank.surface": answer.request.surface, "fusionrank.arm": answer.arm,
            "fusionrank.candidates": len(answer.request.candidates.ids),
        })
        trace.get_current_span().set_attributes(attributes)
        span("decode", t_start, t_decoded)
        at = answer.started
        for key, name in _SCORER_STAGES:
            seconds = outcome.timings.get(key, 0.0)
            span(name, at, at + seconds)
            at += seconds
        span("encode", t_answered, t_encoded)

    return record
