"""Hot swap under load against a real uvicorn on 127.0.0.1: no request fails, none mixes versions.

Client threads hammer /v1/score (debug on) while the admin API flips the active policy between
versions 1 and 2 a hundred times (the file watcher runs too, and sees every persisted pointer).
Every response must recompute exactly from the weights of the policy version it names.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from app.main import create_app
from tests.conftest import ADMIN, ADMIN_TOKEN, make_settings

FLIPS = 100
CLIENTS = 3
MAX_REQUESTS_PER_CLIENT = 3000
DEADLINE_SECONDS = 120.0


@pytest.fixture
def live_server(store_copy: tuple[Path, Path]) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port of 127.0.0.1; stopped after the test."""
    store, policies = store_copy
    settings = make_settings(store, policies, admin_tokens={"ops": ADMIN_TOKEN}, policy_watch_interval=0.2)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", ws="none", lifespan="on"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive()


def _weights(policies: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """version -> term name -> term, read from the policy files themselves."""
    out = {}
    for version in ("1", "2"):
        data = yaml.safe_load((policies / "home" / f"{version}.yaml").read_text())
        out[version] = {t["name"]: t for t in data["utility"]}
    return out


def _check(body: dict[str, Any], terms_by_version: dict[str, dict[str, dict[str, Any]]],
           attributes: dict[str, dict[str, Any]]) -> str:
    """Recompute every answered utility from the named version's file; returns that version."""
    version: str = body["versions"]["policy_version"]
    expected_terms = terms_by_version[version]
    assert body["overrides"] == []  # the golden context matches no override: file weights apply
    assert body["candidates"]
    for candidate in body["candidates"]:
        terms = candidate["debug"]["terms"]
        assert [t["name"] for t in terms] == list(expected_terms)
        utility = 0.0
        for term in terms:
            spec = expected_terms[term["name"]]
            factor = attributes[candidate["id"]].get(spec["attribute"], 0.0) if "attribute" in spec else 1.0
            prediction = candidate["predictions"][spec["task"]]
            assert term["weight"] == spec["weight"]
            assert term["contribution"] == pytest.approx(spec["weight"] * prediction * factor, rel=1e-12, abs=1e-15)
            utility += spec["weight"] * prediction * factor
        assert candidate["utility"] == pytest.approx(utility, rel=1e-12, abs=1e-15)
    return version


@pytest.mark.slow
def test_flipping_the_active_policy_under_load_drops_and_mixes_nothing(
    live_server: str, store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    terms_by_version = _weights(store_copy[1])
    assert terms_by_version["1"]["purchase_margin"]["weight"] != terms_by_version["2"]["purchase_margin"]["weight"]
    attributes = {c["id"]: c["attributes"] for c in sample_request["candidates"]}
    body = dict(sample_request, options={"debug": True})
    flipping = threading.Event()
    flipping.set()
    start = time.monotonic()
    results: list[list[tuple[int, Any]]] = [[] for _ in range(CLIENTS)]

    def hammer(out: list[tuple[int, Any]]) -> None:
        with httpx.Client(base_url=live_server, timeout=30) as http:
            while flipping.is_set() and len(out) < MAX_REQUESTS_PER_CLIENT:
                if time.monotonic() - start > DEADLINE_SECONDS:
                    break
                try:
                    response = http.post("/v1/score", json=body)
                    out.append((response.status_code, response.json()))
                except Exception as exc:  # a dropped connection is a failed request too
                    out.append((0, repr(exc)))

    threads = [threading.Thread(target=hammer, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    flips: list[int] = []
    try:
        with httpx.Client(base_url=live_server, timeout=30, headers=ADMIN) as admin:
            time.sleep(0.2)  # let the clients get going
            for i in range(FLIPS):
                version = "2" if i % 2 == 0 else "1"
                response = admin.post("/admin/policies/home/activate", json={"version": version})
                flips.append(response.status_code)
                assert response.json()["to"] == version
    finally:
        flipping.clear()
        for thread in threads:
            thread.join(60)
    elapsed = time.monotonic() - start

    responses = [r for out in results for r in out]
    failures = [r for r in responses if r[0] != 200]
    versions = Counter(_check(r[1], terms_by_version, attributes) for r in responses if r[0] == 200)
    print(f"\nhot swap: {len(responses)} requests, {flips.count(200)}/{FLIPS} flips, {len(failures)} failed,"
          f" by version {dict(versions)}, {elapsed:.1f} s")
    assert flips == [200] * FLIPS
    assert failures == []
    assert versions["1"] > 0 and versions["2"] > 0  # requests really ran across the flips
    assert len(responses) >= 2 * FLIPS
    with httpx.Client(base_url=live_server, timeout=30, headers=ADMIN) as admin:
        listing = admin.get("/admin/policies").json()["surfaces"]["home"]
        metrics = admin.get("/metrics").text
    assert listing["active"] == "1"  # the 100th flip went back to 1
    assert f'fusionrank_policy_activations_total{{source="api",surface="home"}} {float(FLIPS)}' in metrics
    assert 'fusionrank_policy_activations_total{source="watch"' not in metrics  # it saw only its own writes
    assert "fusionrank_policy_activation_failures_total{" not in metrics  # no refused flip
