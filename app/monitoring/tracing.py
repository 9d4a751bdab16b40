"""OpenTelemetry traces, opt-in: the `tracing` extra and the standard `OTEL_*` variables.

On when the extra is installed (`pip install 'fusionrank[tracing]'`) and the environment asks for traces:
`OTEL_TRACES_EXPORTER` set to `otlp` (OTLP over HTTP/protobuf, `OTEL_EXPORTER_OTLP_ENDPOINT` & co.) or
`console`, or, without it, `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set;
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off. The SDK reads the rest itself
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, ...).

When on: a server span per HTTP request (opentelemetry-instrumentation-asgi; an incoming W3C
`traceparent` makes it a child of the caller's span), and for `/v1/score` one child span per stage
(decode, features, model, calibration, compose, encode) with the surface, the versions, the arm and
the candidate count as attributes on the server span. The stage spans are written after the fact from
the timings the scoring path takes anyway, so the hot path runs no tracing code per stage.

When off, nothing of OpenTelemetry is imported and `stage_spans` is None: the cost per request is one
module attribute read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from app import __version__

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.serving.answer import Answer

__all__ = ["StageSpans", "install_tracing", "stage_spans", "tracing_requested"]

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


def install_tracing(app: FastAPI, provider: Any = None) -> bool:
    """Trace `app`'s requests into `provider` (a `TracerProvider`; default: one built from the environment).

    Call before the app starts. Returns False, with a warning, when the `tracing` extra is not installed.
    """
    global stage_spans
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError:
        log.warning(
            "OTEL_* variables ask for traces but the tracing extra is not installed: no traces;"
            " install it with `pip install 'fusionrank[tracing]'` or unset OTEL_TRACES_EXPORTER"
            " and OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return False
    if provider is None:
        provider = _provider_from_environment()
    tracer = provider.get_tracer("fusionrank", __version__)
    # receive/send spans would add two spans per body chunk: the server span and the stages say enough.
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider, exclude_spans=["receive", "send"])
    stage_spans = _stage_recorder(tracer)
    return True


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
