"""Three replicas on one store folder behind HAProxy: declared rollouts converge, canaries stay sticky.

The fleet is started once for the module (about 10 s) and the tests run in order on it: a race of two
admins, a sticky 20 % canary, activations under load, then a replica killed mid-activation.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from app.artifacts.rollout import ROLLOUT_FILE, load_rollout
from app.serving.routing import routes_to_canary
from tests.conftest import BUNDLE
from tests.fleet.harness import ADMIN, ADMIN_TOKENS, Arrival, Fleet, triple
from tests.lifecycle_helpers import build_store

pytestmark = pytest.mark.slow

# The replicas' poll interval. "Within 2 poll intervals" holds while a new bundle's warm-up stays under one
# interval: up to 0.38 s was measured with a load average of 13 on the 2 shared cores, hence 0.5 s, not less.
POLL = 0.5


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    build_store(root)  # demo_ranker/{1,2} x calibration {1,2}, with golden batches; policies 1 and 2
    running = Fleet(root, replicas=3, poll_interval=POLL)
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def body() -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((BUNDLE / "sample_request.json").read_text())
    sample["candidates"] = sample["candidates"][:1]  # the fleet is under test, not the model
    return sample


def _as_user(body: dict[str, Any], user: str) -> bytes:
    out = copy.deepcopy(body)
    out["context"]["user_id"] = user
    return json.dumps(out).encode()


_JSON = {"content-type": "application/json"}


def _generation(fleet: Fleet) -> int:
    return load_rollout(fleet.policies / "home" / ROLLOUT_FILE).generation


def _converge(fleet: Fleet, want: tuple[str, str, str], generation: int, timeout: float) -> float:
    """Seconds until every replica serves `want` at `generation`; fails after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all(fleet.serving(r) == (want, generation) for r in fleet.replica_list):
            return time.monotonic() - t0
        time.sleep(0.02)
    seen = [fleet.serving(r) for r in fleet.replica_list]
    raise AssertionError(f"not converged on {want} at generation {generation} after {timeout}s: {seen}")


def test_d_two_admins_racing_exactly_one_wins(fleet: Fleet) -> None:
    a, b = fleet.replica_list[0], fleet.replica_list[1]
    read = httpx.get(f"{a.url}/admin/rollouts/home", headers=ADMIN).json()
    generation = read["declared"]["generation"] if read["declared"] else 0
    barrier = threading.Barrier(2)
    results: dict[str, httpx.Response] = {}

    def write(name: str, url: str, version: str) -> None:
        headers = {"authorization": f"Bearer {ADMIN_TOKENS[name]}"}
        barrier.wait()
        results[name] = httpx.post(f"{url}/admin/policies/home/activate", json={"version": version},
                                   params={"expected_generation": generation, "reason": f"race {name}"},
                                   headers=headers, timeout=30)

    # Both ask for a change (policy 2): a writer asking for what is served already would change nothing, write
    # nothing and answer 200 "unchanged" when it got the lock first.
    threads = [threading.Thread(target=write, args=("alice", a.url, "2")),
               threading.Thread(target=write, args=("bob", b.url, "2"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200, 409], {k: r.text for k, r in results.items()}
    winner = next(k for k, r in results.items() if r.status_code == 200)
    loser = next(k for k, r in results.items() if r.status_code == 409)
    assert f"generation {generation + 1}" in results[loser].json()["error"]["message"]
    declared = load_rollout(fleet.policies / "home" / ROLLOUT_FILE)
    assert (declared.generation, declared.changed_by, declared.reason) == (generation + 1, winner, f"race {winner}")
    # Back to policy 1 for the next tests (whoever won), and every replica follows.
    if declared.active.policy_version != "1":
        done = httpx.post(f"{a.url}/admin/policies/home/activate", json={"version": "1"}, headers=ADMIN, timeout=30)
        assert done.status_code == 200, done.text
    _converge(fleet, ("1", "1", "1"), _generation(fleet), timeout=10)


def test_b_a_20_percent_canary_is_sticky_across_replicas(fleet: Fleet, body: dict[str, Any]) -> None:
    started = httpx.post(f"{fleet.replica_list[0].url}/admin/surfaces/home/canary",
                         json={"model_version": "2", "calibration_version": "2", "fraction": 0.2},
                         params={"reason": "fleet canary"}, headers=ADMIN, timeout=30)
    assert started.status_code == 200, started.text
    generation = started.json()["generation"]
    _converge(fleet, ("1", "1", "1"), generation, timeout=10)  # the stable triple stays; the canary is applied

    arms: dict[str, set[str]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def user(index: int) -> None:
        name = f"user-{index}"
        request = _as_user(body, name)
        for _ in range(5):
            response = client.post("/v1/score", content=request, headers=_JSON)
            if response.status_code != 200:
                with lock:
                    failures.append(response.text)
                continue
            answer = response.json()
            arm = answer.get("arm", "stable")
            want = ("2", "2", "1") if arm == "canary" else ("1", "1", "1")
            assert triple(answer["versions"]) == want
            with lock:
                arms.setdefault(name, set()).add(arm)

    # One client for every thread (thread-safe; building one per user costs an SSL context each).
    with httpx.Client(base_url=fleet.url, timeout=10) as client, ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(user, range(1000)))
    assert not failures, failures[:3]
    assert len(arms) == 1000 and all(len(seen) == 1 for seen in arms.values())  # one arm per user, fleet-wide
    share = sum("canary" in seen for seen in arms.values()) / len(arms)
    assert abs(share - 0.2) <= 0.03, share
    # ...and it is the arm the pure function of (surface, user, salt) gives, whichever replica answered.
    salt = load_rollout(fleet.policies / "home" / ROLLOUT_FILE).canary.salt  # type: ignore[union-attr]
    expected = {f"user-{i}": {"canary" if routes_to_canary("home", f"user-{i}", 0.2, salt) else "stable"}
                for i in range(1000)}
    assert arms == expected
    aborted = httpx.post(f"{fleet.replica_list[1].url}/admin/surfaces/home/canary/abort", headers=ADMIN, timeout=30)
    assert aborted.status_code == 200, aborted.text
    _converge(fleet, ("1", "1", "1"), aborted.json()["generation"], timeout=10)
    print(f"canary share {share:.3f} over 1000 users x 5 requests; users seeing two arms: 0")


def _timed_change(fleet: Fleet, path: str, body: dict[str, str], reason: str) -> tuple[int, list[Arrival]]:
    """Make one change through replica 0's admin API; per replica, when it served the written generation,
    timed from the moment the admin write returned."""
    response = httpx.post(f"{fleet.replica_list[0].url}{path}", json=body, params={"reason": reason}, headers=ADMIN,
                          timeout=30)
    returned = time.time()  # the replicas' `applied_at` is read on the same clock
    assert response.status_code == 200, response.text
    generation = int(response.json()["generation"])
    return generation, fleet.arrivals(generation, since=returned, timeout=10 * POLL + 10)


# What a replica's arrival may add to "one poll interval plus its warm-up": the watcher's pass around the apply
# (listing the policies folder) and its thread waking up on a loaded machine.
PASS_SLACK = 0.1


def test_a_activations_under_load_converge_without_mixed_answers(fleet: Fleet, body: dict[str, Any]) -> None:
    """Issue #21, fleet test (a): every replica serves the new triple within 2 poll intervals of the admin write
    returning, and (Deliver 2) within one poll interval plus its own warm-up; 0 failed requests, 0 answers mixing
    versions."""
    allowed = {("1", "1", "1"), ("1", "1", "2"), ("2", "2", "2")}
    stop = threading.Event()
    answers: list[tuple[str, str, str]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(base_url=fleet.url, timeout=10) as client:
            n = 0
            while not stop.is_set() and n < 5000:  # bounded in count and (below) in time
                n += 1
                response = client.post("/v1/score", content=_as_user(body, f"load-{worker}-{n}"), headers=_JSON)
                with lock:
                    if response.status_code == 200:
                        answers.append(triple(response.json()["versions"]))
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    workers = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        changes = {
            "policy 2": _timed_change(fleet, "/admin/policies/home/activate", {"version": "2"}, "policy 2 under load"),
            # A new model version: loaded, checked on its golden batch and warmed before it serves.
            "model 2 + calibration 2": _timed_change(fleet, "/admin/surfaces/home/activate",
                                                     {"model_version": "2", "calibration_version": "2"},
                                                     "model 2 + calibration 2 under load"),
        }
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert not failures, failures[:3]
    assert answers and set(answers) <= allowed, set(answers) - allowed  # every answer one whole triple
    assert ("2", "2", "2") in answers
    generation = changes["model 2 + calibration 2"][0]
    assert all(fleet.serving(r) == (("2", "2", "2"), generation) for r in fleet.replica_list)
    for name, (_, arrivals) in changes.items():
        shown = ", ".join(f"{a.seconds:.3f} s (warm-up {a.apply_seconds:.3f} s)" for a in arrivals)
        print(f"{name}: every replica in {max(a.seconds for a in arrivals):.3f} s, poll {POLL} s; per replica {shown}")
        assert max(a.seconds for a in arrivals) <= 2 * POLL, (name, arrivals)
        for arrival in arrivals:
            assert arrival.seconds <= POLL + arrival.apply_seconds + PASS_SLACK, (name, arrival)
    print(f"{len(answers)} answers under load, 0 failed, 0 mixing versions")


def test_c_a_replica_killed_mid_activation_comes_back_on_the_current_generation(fleet: Fleet) -> None:
    victim = fleet.replica_list[2]
    admin = fleet.replica_list[0].url
    change = {}

    def activate() -> None:
        change["response"] = httpx.post(f"{admin}/admin/surfaces/home/rollback", params={"reason": "kill test"},
                                        headers=ADMIN, timeout=30)

    thread = threading.Thread(target=activate)
    thread.start()
    time.sleep(0.05)  # the victim's watcher is (or is about to be) loading the rolled-back triple
    fleet.kill(victim)
    thread.join(30)
    response = change["response"]
    assert response.status_code == 200, response.text
    generation = response.json()["generation"]
    fleet.launch(victim)
    fleet.wait_ready(victim)
    want = triple(httpx.get(f"{admin}/readyz").json()["surfaces"]["home"])
    assert fleet.serving(victim) == (want, generation)
    _converge(fleet, want, generation, timeout=5)
