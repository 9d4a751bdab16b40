"""`GET /explain`: off by default, one self-contained page, behind the admin token when one is set."""

from __future__ import annotations

import base64
import re
from typing import Any

TOKEN = "e" * 32


def test_the_page_is_off_unless_enabled(client_factory: Any) -> None:
    client = client_factory()
    for path in ("/explain", "/explain/requests"):
        response = client.get(path)
        assert response.status_code == 404
        assert "FUSIONRANK_EXPLAIN_PAGE=true" in response.json()["error"]["message"]


def test_the_page_is_self_contained(client_factory: Any) -> None:
    client = client_factory(explain_page=True)
    response = client.get("/explain")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no CDN, no external asset
    assert "<script src" not in page and "<link" not in page
    assert "/v1/score" in page and "/v1/surfaces" in page and "debug: true" in page
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp


def test_the_sample_requests_are_served_per_surface(client_factory: Any, sample_request_body: dict[str, Any]) -> None:
    client = client_factory(explain_page=True)
    requests = client.get("/explain/requests").json()["requests"]
    assert list(requests) == ["home"]
    assert requests["home"]["candidates"] == sample_request_body["candidates"]


def test_with_a_token_the_page_needs_it_as_bearer_or_basic_password(client_factory: Any) -> None:
    client = client_factory(explain_page=True, admin_token=TOKEN)
    refused = client.get("/explain")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic ")
    wrong = base64.b64encode(b"me:" + b"x" * 32).decode()
    assert client.get("/explain", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert client.get("/explain/requests", headers={"Authorization": "Basic !!!"}).status_code == 401
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert client.get("/explain", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/explain/requests", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'fusionrank_admin_auth_failures_total{reason="invalid"}' in metrics  # counted like the admin API's
