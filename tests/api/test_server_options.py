"""`server_options`: the uvicorn options `fusionrank serve` runs with (app/api/server.py)."""

from __future__ import annotations

import importlib.util

import pytest
import uvicorn

from app.api import server
from tests.conftest import make_settings


def test_serve_uses_the_bounded_httptools_protocol_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_limits", None)  # restored after the test
    settings = make_settings(max_header_bytes=4096, header_read_timeout_seconds=3, shutdown_grace_seconds=7)
    options = server.server_options(settings)
    assert options.pop("log_config")["loggers"]["uvicorn"]["handlers"] == ["stderr"]  # tests/api/test_logs.py
    assert options == {"http": "app.api.server:BoundedHttpToolsProtocol", "timeout_graceful_shutdown": 7}
    config = uvicorn.Config("app.main:create_app", factory=True, **options)
    config.load()
    assert config.http_protocol_class.__name__ == "BoundedHttpToolsProtocol"
    assert server._current_limits() == server.HeaderLimits(4096, 3.0)


def test_without_httptools_the_h11_protocol_bounds_the_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_limits", None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "httptools" else real(name))
    options = server.server_options(make_settings(max_header_bytes=8192))
    assert options["http"] == "h11" and options["h11_max_incomplete_event_size"] == 8192
