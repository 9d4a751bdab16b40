"""Fleet figures of issue #21's closing note, in one run: convergence time, canary share and stickiness.

Starts 3 `fusionrank serve` replicas on one store folder behind HAProxy (tests/fleet/harness.py), then:

1. **Convergence**: 20 changes through replica 0's admin API — policy activations alternating 1 <-> 2, and
   every fifth a model + calibration switch (a model bundle loaded, golden-checked and warmed) — each timed
   from the moment the admin write returned to the moment the last replica installed the written generation,
   read from each replica's own `applied_at` (GET /admin/rollouts/home; the replicas share this machine's
   clock, so probing latency does not count). Also each replica's `apply_seconds` (its warm-up: validate,
   golden batch, load and warm, swap).
2. **Canary**: a 20 % canary (the model + calibration the stable triple does not serve), then 1,000
   users x 5 requests each through HAProxy (round-robin over the 3 replicas): the canary share over users,
   how many users saw more than one arm, and whether every user's arm is the one the pure function of
   (surface, user, salt) gives.

    PYTHONPATH=$PWD python -m bench.fleet_convergence            # print the figures
    PYTHONPATH=$PWD python -m bench.fleet_convergence --record   # and append them to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from app.artifacts.rollout import ROLLOUT_FILE, load_rollout
from app.serving.routing import routes_to_canary
from bench.common import ROOT, append_results, load_average, machine, now
from tests.fleet.harness import ADMIN, Arrival, Fleet, triple
from tests.lifecycle_helpers import build_store

__all__ = ["main"]

USERS = 1000
REQUESTS_PER_USER = 5
CANARY_SHARE = 0.2


def _change(fleet: Fleet, path: str, body: dict[str, str]) -> list[Arrival]:
    response = fleet.http.post(f"{fleet.replica_list[0].url}{path}", json=body, headers=ADMIN, timeout=60)
    returned = time.time()  # the clock of the replicas' applied_at, read right after the answer
    response.raise_for_status()
    return fleet.arrivals(int(response.json()["generation"]), since=returned)


def convergence(fleet: Fleet, changes: int) -> tuple[list[list[Arrival]], list[list[Arrival]]]:
    """Per change, every replica's arrival: (policy activations, model + calibration switches)."""
    policy: list[list[Arrival]] = []
    model: list[list[Arrival]] = []
    for i in range(changes):
        if i % 5 == 4:
            version = "2" if i % 10 == 4 else "1"
            model.append(_change(fleet, "/admin/surfaces/home/activate",
                                 {"model_version": version, "calibration_version": version}))
        else:
            policy.append(_change(fleet, "/admin/policies/home/activate", {"version": "2" if i % 2 == 0 else "1"}))
    return policy, model


def canary(fleet: Fleet) -> dict[str, Any]:
    """A 20 % canary, 1,000 users x 5 requests through HAProxy: share, users with two arms, agreement."""
    stable = triple(fleet.http.get(f"{fleet.replica_list[0].url}/readyz").json()["surfaces"]["home"])
    other = "1" if stable[0] == "2" else "2"  # the canary serves the other model + calibration
    arm_triples = {"stable": stable, "canary": (other, other, stable[2])}
    started = fleet.http.post(f"{fleet.replica_list[0].url}/admin/surfaces/home/canary", headers=ADMIN, timeout=60,
                              json={"model_version": other, "calibration_version": other, "fraction": CANARY_SHARE})
    started.raise_for_status()
    fleet.arrivals(int(started.json()["generation"]), since=0.0)
    sample: dict[str, Any] = json.loads((ROOT / "model_store" / "demo_ranker" / "1" / "sample_request.json")
                                        .read_text())
    sample["candidates"] = sample["candidates"][:1]  # the fleet is measured, not the model
    arms: dict[str, set[str]] = {}
    failed: list[int] = []
    lock = threading.Lock()

    def user(client: httpx.Client, index: int) -> None:
        body = copy.deepcopy(sample)
        body["context"]["user_id"] = f"user-{index}"
        content = json.dumps(body).encode()
        for _ in range(REQUESTS_PER_USER):
            response = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
            with lock:
                if response.status_code != 200:
                    failed.append(response.status_code)
                    continue
                answer = response.json()
                arm = answer.get("arm", "stable")
                if triple(answer["versions"]) != arm_triples[arm]:
                    failed.append(-1)  # an answer whose versions are not its arm's: counted as a failure
                arms.setdefault(f"user-{index}", set()).add(arm)

    with httpx.Client(base_url=fleet.url, timeout=30) as client, ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: user(client, i), range(USERS)))
    salt = load_rollout(fleet.policies / "home" / ROLLOUT_FILE).canary.salt  # type: ignore[union-attr]
    expected = {f"user-{i}": "canary" if routes_to_canary("home", f"user-{i}", CANARY_SHARE, salt) else "stable"
                for i in range(USERS)}
    aborted = fleet.http.post(f"{fleet.replica_list[0].url}/admin/surfaces/home/canary/abort", headers=ADMIN,
                              timeout=60)
    aborted.raise_for_status()
    return {
        "share": sum("canary" in seen for seen in arms.values()) / max(len(arms), 1),
        "users": len(arms),
        "two_arms": sum(len(seen) > 1 for seen in arms.values()),
        "agree": sum(seen == {expected[name]} for name, seen in arms.items()),
        "failed": len(failed),
    }


def _stats(rows: list[list[Arrival]]) -> str:
    """p50 and max over changes of the last replica's arrival, and the largest warm-up."""
    every = [max(a.seconds for a in row) for row in rows]
    warm = max(a.apply_seconds for row in rows for a in row)
    return f"p50 {statistics.median(every):.3f} s, max {max(every):.3f} s (largest replica warm-up {warm:.3f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.25, help="FUSIONRANK_POLICY_WATCH_INTERVAL of the replicas")
    parser.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_store(root)  # demo_ranker/{1,2} x calibration {1,2}, with golden batches; policies 1 and 2
        fleet = Fleet(root, replicas=3, poll_interval=args.poll).start()
        try:
            policy, model = convergence(fleet, args.changes)
            split = canary(fleet)
        finally:
            fleet.stop()
    every = policy + model
    within = sum(max(a.seconds for a in row) <= 2 * args.poll for row in every)
    lines = [
        f"- {now()}, {machine()}; load average {before} before / {load_average()} after; 3 replicas on one store"
        f" folder, poll interval {args.poll} s, HAProxy round-robin",
        f"- convergence, from the admin write's answer to the last replica installing the written generation"
        f" (each replica's own `applied_at`), over {len(every)} changes: {_stats(every)}; {within} of"
        f" {len(every)} within 2 poll intervals",
        f"    - policy activations ({len(policy)}): {_stats(policy)}",
        f"    - model + calibration switches ({len(model)}, a bundle loaded, golden-checked and warmed):"
        f" {_stats(model)}",
        f"- canary {CANARY_SHARE:.0%} (the other model + calibration), {split['users']} users x {REQUESTS_PER_USER}"
        f" requests through HAProxy: canary share {split['share']:.3f}; users who saw two arms: {split['two_arms']};"
        f" users on the arm the pure function of (surface, user, salt) gives: {split['agree']} of {split['users']};"
        f" failed or mislabelled answers: {split['failed']}",
    ]
    print("\n".join(lines))
    if args.record:
        append_results("bench/fleet_convergence.py", lines)


if __name__ == "__main__":
    main()
