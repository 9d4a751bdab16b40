"""Hot swap under load against a real uvicorn on 127.0.0.1: no request fails, none mixes versions.

Client threads hammer /v1/score (debug on) while the admin API flips the active policy between
versions 1 and 2 a hundred times (the file watcher runs too, and sees every persisted pointer);
then, in a second test, while the `active` pointer file is flipped 20 times for the watcher; and,
deterministically, a request paused mid-scoring finishes on the snapshot it read before a switch.
Every response must recompute exactly from the weights of the policy version it names.
"""

from __future__ import annotations

import importlib
import os
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
WATCH_FLIPS = 20
CLIENTS = 3
MAX_REQUESTS_PER_CLIENT = 3000
DEADLINE_SECONDS = 120.0


@pytest.fixture
def live_server(store_copy: tuple[Path, Path]) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port of 127.0.0.1; stopped after the test."""
    store, policies = store_copy
    settings = make_settings(store, policies, admin_tokens={"ops": ADMIN_TOKEN}, policy_watch_interval=0.1)
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


class _Load:
    """Client threads posting the golden batch (debug on) until stopped, bounded in count and time."""

    def __init__(self, base_url: str, body: dict[str, Any]) -> None:
        self.base_url, self.body = base_url, body
        self.running = threading.Event()
        self.results: list[list[tuple[int, Any]]] = [[] for _ in range(CLIENTS)]
        self.threads = [threading.Thread(target=self._hammer, args=(out,)) for out in self.results]
        self.start = time.monotonic()
        self.elapsed = 0.0

    def __enter__(self) -> _Load:
        self.running.set()
        for thread in self.threads:
            thread.start()
        time.sleep(0.2)  # let the clients get going
        return self

    def __exit__(self, *_: object) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join(60)
        self.elapsed = time.monotonic() - self.start

    def _hammer(self, out: list[tuple[int, Any]]) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            while self.running.is_set() and len(out) < MAX_REQUESTS_PER_CLIENT:
                if time.monotonic() - self.start > DEADLINE_SECONDS:
                    break
                try:
                    response = http.post("/v1/score", json=self.body)
                    out.append((response.status_code, response.json()))
                except Exception as exc:  # a dropped connection is a failed request too
                    out.append((0, repr(exc)))

    def responses(self) -> list[tuple[int, Any]]:
        return [r for out in self.results for r in out]


def _verify(load: _Load, policies: Path, sample_request: dict[str, Any], flips: int, how: str) -> None:
    terms_by_version = _weights(policies)
    assert terms_by_version["1"]["purchase_margin"]["weight"] != terms_by_version["2"]["purchase_margin"]["weight"]
    attributes = {c["id"]: c["attributes"] for c in sample_request["candidates"]}
    responses = load.responses()
    failures = [r for r in responses if r[0] != 200]
    versions = Counter(_check(r[1], terms_by_version, attributes) for r in responses if r[0] == 200)
    print(f"\nhot swap ({how}): {len(responses)} requests, {flips} flips, {len(failures)} failed,"
          f" by version {dict(versions)}, {load.elapsed:.1f} s")
    assert failures == []
    assert versions["1"] > 0 and versions["2"] > 0  # requests really ran across the flips
    assert len(responses) >= flips  # load ran all along (typically 10x more)


@pytest.mark.slow
def test_flipping_the_active_policy_under_load_drops_and_mixes_nothing(
    live_server: str, store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    body = dict(sample_request, options={"debug": True})
    flips: list[int] = []
    with _Load(live_server, body) as load, httpx.Client(base_url=live_server, timeout=30, headers=ADMIN) as admin:
        for i in range(FLIPS):
            version = "2" if i % 2 == 0 else "1"
            response = admin.post("/admin/policies/home/activate", json={"version": version})
            flips.append(response.status_code)
            assert response.json()["to"] == version
    assert flips == [200] * FLIPS
    _verify(load, store_copy[1], sample_request, flips.count(200), "admin API")
    with httpx.Client(base_url=live_server, timeout=30, headers=ADMIN) as admin:
        listing = admin.get("/admin/policies").json()["surfaces"]["home"]
        metrics = admin.get("/metrics").text
    assert listing["active"] == "1"  # the 100th flip went back to 1
    assert f'fusionrank_policy_activations_total{{source="api",surface="home"}} {float(FLIPS)}' in metrics
    assert 'fusionrank_policy_activations_total{source="watch"' not in metrics  # it saw only its own writes
    refused = [line for line in metrics.splitlines() if line.startswith("fusionrank_policy_activation_failures_total{")]
    assert refused and all(line.endswith(" 0.0") for line in refused), refused  # primed, and no refused flip


@pytest.mark.slow
def test_flipping_the_pointer_file_under_load_drops_and_mixes_nothing(
    live_server: str, store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    pointer = store_copy[1] / "home" / "active"
    body = dict(sample_request, options={"debug": True})
    flips = 0
    with _Load(live_server, body) as load, httpx.Client(base_url=live_server, timeout=30, headers=ADMIN) as admin:
        for i in range(WATCH_FLIPS):
            version = "2" if i % 2 == 0 else "1"
            tmp = pointer.with_name(".active.tmp")
            tmp.write_text(version + "\n")
            os.replace(tmp, pointer)  # as an operator (or kubelet) would: atomically
            deadline = time.monotonic() + 10
            while admin.get("/admin/policies").json()["surfaces"]["home"]["active"] != version:
                assert time.monotonic() < deadline, "the watcher did not apply the pointer within 10 s"
                time.sleep(0.05)
            flips += 1
    _verify(load, store_copy[1], sample_request, flips, "file watcher")
    with httpx.Client(base_url=live_server, timeout=30) as http:
        metrics = http.get("/metrics").text
    assert f'fusionrank_policy_activations_total{{source="watch",surface="home"}} {float(WATCH_FLIPS)}' in metrics


def test_a_request_in_flight_finishes_on_the_snapshot_it_started_with(
    client_factory: Any, store_copy: tuple[Path, Path], sample_request: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    score_route = importlib.import_module("app.serving.answer")  # the data plane that calls score_request()

    store, policies = store_copy
    client = client_factory(store=store, policies=policies, policy_watch_interval=0, admin_token=ADMIN_TOKEN)
    entered, release = threading.Event(), threading.Event()
    real_score = score_route.score_request

    def paused_score(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(10), "the test never released the request"
        return real_score(*args, **kwargs)

    monkeypatch.setattr(score_route, "score_request", paused_score)
    answers: list[dict[str, Any]] = []
    body = dict(sample_request, options={"debug": True})
    request = threading.Thread(target=lambda: answers.append(client.post("/v1/score", json=body).json()))
    request.start()
    try:
        assert entered.wait(10)
        # the request has read the snapshot and is scoring: switch to version 2 under its feet
        registry = client.app.state.policy_registry
        assert registry.activate_policy("home", "2", who="test").after == "2"
    finally:
        release.set()
        request.join(10)
    terms = _weights(policies)
    attributes = {c["id"]: c["attributes"] for c in sample_request["candidates"]}
    assert _check(answers[0], terms, attributes) == "1"  # finished, whole, on version 1
    monkeypatch.setattr(score_route, "score_request", real_score)
    assert _check(client.post("/v1/score", json=body).json(), terms, attributes) == "2"
