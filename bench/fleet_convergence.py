"""Fleet convergence: how long from an admin change to every replica serving it (p50/max over 20 changes).

Starts 3 `fusionrank serve` replicas on one store folder behind HAProxy (tests/fleet/harness.py), then
makes 20 changes through replica 0's admin API — policy activations alternating 1 <-> 2, and every
fifth a model + calibration switch — and times, from the 200 answer, until every replica reports the
written generation (`GET /admin/rollouts/home`). Run: `PYTHONPATH=$PWD python bench/fleet_convergence.py`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import append_results, load_average, machine, now
from tests.fleet.harness import ADMIN, Fleet
from tests.lifecycle_helpers import build_store


def _wait(fleet: Fleet, generation: int, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    pending = list(fleet.replica_list)
    while pending and time.monotonic() - t0 < timeout:
        pending = [
            r for r in pending
            if fleet.http.get(f"{r.url}/admin/rollouts/home", headers=ADMIN).json()["serving_generation"]
            != generation
        ]
        if pending:
            time.sleep(0.01)
    if pending:
        raise RuntimeError(f"replicas {[r.port for r in pending]} did not reach generation {generation}")
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_store(root)
        fleet = Fleet(root, replicas=3, poll_interval=args.poll).start()
        try:
            admin = fleet.replica_list[0].url
            policy_s: list[float] = []
            model_s: list[float] = []
            for i in range(args.changes):
                if i % 5 == 4:
                    model = "2" if i % 10 == 4 else "1"
                    response = fleet.http.post(f"{admin}/admin/surfaces/home/activate", headers=ADMIN, timeout=60,
                                          json={"model_version": model, "calibration_version": model})
                    bucket = model_s
                else:
                    response = fleet.http.post(f"{admin}/admin/policies/home/activate", headers=ADMIN, timeout=60,
                                          json={"version": "2" if i % 2 == 0 else "1"})
                    bucket = policy_s
                response.raise_for_status()
                bucket.append(_wait(fleet, response.json()["generation"]))
        finally:
            fleet.stop()
    every = policy_s + model_s
    lines = [
        f"- {now()}, {machine()}, load average {load_average()}; 3 replicas, poll interval {args.poll} s, HAProxy",
        f"- all {len(every)} changes: p50 {statistics.median(every):.3f} s, max {max(every):.3f} s",
        f"- policy activations ({len(policy_s)}): p50 {statistics.median(policy_s):.3f} s, max {max(policy_s):.3f} s",
        f"- model + calibration switches ({len(model_s)}, a model bundle loaded, golden-checked and warmed):"
        f" p50 {statistics.median(model_s):.3f} s, max {max(model_s):.3f} s",
        "- measured from the writer's 200 answer to every replica reporting the written generation",
    ]
    print("\n".join(lines))
    append_results("bench/fleet_convergence.py", lines)


if __name__ == "__main__":
    main()
