"""OpenTelemetry: a server span per request honouring `traceparent`, stage spans, versions; off by default."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.monitoring import tracing
from tests.conftest import make_settings

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def test_a_score_request_is_a_server_span_with_one_child_per_stage(
    monkeypatch: pytest.MonkeyPatch, sample_request: dict[str, Any]
) -> None:
    monkeypatch.setattr(tracing, "stage_spans", None)  # restored (to off) after the test
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with TestClient(create_app(make_settings(), tracer_provider=provider)) as client:
        answer = client.post("/v1/score", json=sample_request,
                             headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert answer.status_code == 200
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind.name == "SERVER"]
    assert format(server.context.trace_id, "032x") == TRACE_ID  # the caller's trace continues
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    stages = sorted((s for s in spans if s is not server), key=lambda s: s.start_time)
    assert [s.name for s in stages] == ["decode", "features", "model", "calibration", "compose", "encode"]
    for stage in stages:
        assert stage.parent is not None and stage.parent.span_id == server.context.span_id
        assert server.start_time <= stage.start_time <= stage.end_time <= server.end_time, stage.name
    versions = answer.json()["versions"]
    attributes = server.attributes or {}
    for key in ("model_version", "calibration_version", "policy_version"):
        assert attributes[f"fusionrank.{key}"] == versions[key]
    assert attributes["fusionrank.candidates"] == len(sample_request["candidates"])
    assert attributes["fusionrank.surface"] == "home"


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_on_only_when_the_environment_asks(environ: dict[str, str], requested: bool) -> None:
    assert tracing.tracing_requested(environ) is requested


def test_off_nothing_of_the_opentelemetry_sdk_is_imported() -> None:
    code = (
        "import sys; from fastapi.testclient import TestClient; from app.main import create_app;"
        "from tests.conftest import make_settings, BUNDLE; import json;"
        "body = json.loads((BUNDLE / 'sample_request.json').read_text());"
        "c = TestClient(create_app(make_settings())); c.__enter__();"
        "assert c.post('/v1/score', json=body).status_code == 200;"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout
