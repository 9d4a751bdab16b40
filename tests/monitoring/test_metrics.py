"""Service metrics: the counters the alert rules watch exist at 0 before their first event.

Prometheus' increase() needs a sample before the first event: a counter series that appears at 1 has
no increase, so a replica's first shed request or refused swap would never alert.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN

PRIMED = (
    'fusionrank_requests_shed_total{route="/v1/score"}',
    'fusionrank_requests_shed_total{route="/v1/feedback"}',
    'fusionrank_deadline_exceeded_total{route="/v1/score"}',
    'fusionrank_deadline_exceeded_total{route="/v1/feedback"}',
    'fusionrank_admin_auth_failures_total{reason="missing"}',
    'fusionrank_admin_auth_failures_total{reason="invalid"}',
    'fusionrank_policy_activation_failures_total{source="api",surface="home"}',
    'fusionrank_policy_activation_failures_total{source="watch",surface="home"}',
    'fusionrank_policy_file_rejections_total{surface="home"}',
    *(f'fusionrank_bundle_activation_failures_total{{action="{action}",surface="home"}}'
      for action in ("activate", "rollback", "canary", "promote", "shadow_model")),
)


def _samples(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    }


def test_alerted_counters_are_primed_at_zero_and_count_from_there(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(admin_token=ADMIN_TOKEN)
    before = _samples(client)
    assert {series: before.get(series) for series in PRIMED} == dict.fromkeys(PRIMED, 0.0)

    assert client.get("/admin/policies", headers={"authorization": "Bearer wrong-token"}).status_code == 401
    refused = client.post("/admin/policies/home/activate", json={"version": "9"}, headers=ADMIN)
    assert refused.status_code == 404
    after = _samples(client)
    changed = {series: after[series] for series in PRIMED if after[series] != before[series]}
    assert changed == {
        'fusionrank_admin_auth_failures_total{reason="invalid"}': 1.0,
        'fusionrank_policy_activation_failures_total{source="api",surface="home"}': 1.0,
    }
