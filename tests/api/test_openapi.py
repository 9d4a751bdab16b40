"""The API description: valid OpenAPI, the error envelope on every error status, bearer auth, no CDN."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from app.api.errors import STATUS_BY_ERROR
from tests.conftest import ADMIN_TOKEN


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_the_live_openapi_description_is_valid(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    validate(spec)  # raises on the first violation, naming the path in the document


def test_every_error_status_has_the_envelope_schema_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    envelope = spec["components"]["schemas"]["ErrorBody"]
    assert envelope["required"] == ["error"]
    info = spec["components"]["schemas"]["ErrorInfo"]
    assert {"code", "message", "details", "request_id"} <= set(info["properties"])
    errors = 0
    for path, method, op in _operations(spec):
        assert "500" in op["responses"], (path, method)
        for code, response in op["responses"].items():
            if int(code) < 400:
                continue
            errors += 1
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, code)
            assert media["examples"], (path, method, code)
            for example in media["examples"].values():
                assert set(example["value"]["error"]) == {"code", "message", "details", "request_id"}
    assert errors > 40
    # The examples come from the one error table: each mapped class's code is documented under its status.
    score = spec["paths"]["/v1/score"]["post"]["responses"]
    for kind, status in STATUS_BY_ERROR:
        if str(int(status)) in score:
            codes = {e["value"]["error"]["code"] for e in score[str(int(status))]["content"]["application/json"]
                     ["examples"].values()}
            assert kind.code in codes, (kind, status)
    assert "Retry-After" in score["503"]["headers"]


def test_admin_routes_declare_bearer_auth_and_public_ones_do_not(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["AdminToken"]
        ["description"],
    }
    for path, method, op in _operations(spec):
        secured = op.get("security") == [{"AdminToken": []}]
        assert secured == path.startswith("/admin"), (path, method)


def test_metrics_are_documented_as_prometheus_text(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    (media,) = content
    assert media.startswith("text/plain; version=")
    assert client.get("/metrics").headers["content-type"] == media


def test_bearer_auth_keeps_its_answers(client_factory: Any) -> None:
    service = client_factory(admin_token=ADMIN_TOKEN)
    assert service.get("/admin/policies").status_code == 401
    basic = service.get("/admin/policies", headers={"authorization": "Basic abc"})
    assert basic.status_code == 401 and basic.json()["error"]["code"] == "unauthorized"
    assert service.get("/admin/policies", headers={"authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert service.get("/admin/policies", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200


_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']|(https?://[^\s"'<>)]+)""")


def test_docs_pages_load_every_asset_from_the_service(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        answer = client.get(page)
        assert answer.status_code == 200
        html = answer.text
        urls = {next(g for g in match.groups() if g) for match in _URL.finditer(html)}
        assert urls, page
        external = {u for u in urls if re.match(r"(?:https?:)?//", u)}
        assert not external, f"{page} loads {external}"
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == HTTPStatus.OK, (page, url)
            assert len(asset.content) > 100, url
