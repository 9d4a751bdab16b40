"""Metrics that hold across a fleet: one replica's workers in one scrape, and three replicas in one Prometheus.

(e) `fusionrank serve --workers 2`: one scrape of /metrics counts every request sent to the replica, whichever
worker answered it (prometheus_client's multiprocess mode, app/monitoring/multiproc.py).
(f) A real Prometheus (Debian's binary, the shipped rules, 1 s scrape and rule interval) scraping 3 replicas:
the fleet calibration ratio recorded by the rules equals the ratio of the feedback sent, to 1e-9.
Everything listens on 127.0.0.1 and is stopped afterwards; the traffic is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BUNDLE, MODEL_STORE, POLICIES
from tests.deploy.conftest import DEPLOY, ROOT, free_port
from tests.deploy.test_dashboard_e2e import query, scalar, stop, wait_for

pytestmark = pytest.mark.slow

WORKER_REQUESTS = 200
REPLICAS = 3
BASE_EVENTS = 240  # per task; replica k receives the base set k + 1 times (different event ids)


@contextmanager
def replica(log_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[str]:
    """One `fusionrank serve` on a free port of 127.0.0.1 serving the demo store; its URL once ready."""
    port = free_port()
    command = [
        sys.executable, "-m", "app.cli", "serve", "--model-store", str(MODEL_STORE), "--policies", str(POLICIES),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
    ]
    log = (log_dir / f"replica-{port}.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/readyz", lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200)
        yield url
    finally:
        stop(process)
        log.close()


def score_requests(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith('fusionrank_http_requests_total{route="/v1/score"'):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_one_scrape_of_a_two_worker_replica_counts_every_request(tmp_path: Path) -> None:
    files = tmp_path / "multiproc"
    body = (BUNDLE / "sample_request.json").read_bytes()
    with replica(tmp_path, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(files)}) as url:
        for _ in range(WORKER_REQUESTS):  # a connection per request: the kernel spreads them over both workers
            response = httpx.post(f"{url}/v1/score", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
        scraped = httpx.get(f"{url}/metrics", timeout=10).text
        # The test can fail: both workers answered some requests, so one worker's counters alone are short.
        per_worker = []
        for counter_file in sorted(files.glob("counter_*.db")):
            merged = MultiProcessCollector.merge([str(counter_file)])
            per_worker.append(sum(s.value for m in merged for s in m.samples
                                  if s.name == "fusionrank_http_requests_total"
                                  and s.labels.get("route") == "/v1/score"))
    assert score_requests(scraped) == WORKER_REQUESTS
    # The drift histogram too, under its arm: every scored candidate of both workers, nothing on the canary arm.
    candidates = len(json.loads(body)["candidates"])
    drift = {s.labels["arm"]: s.value for family in text_string_to_metric_families(scraped)
             for s in family.samples if s.name == "fusionrank_served_prediction_count" and s.labels["task"] == "click"}
    assert drift == {"stable": WORKER_REQUESTS * candidates, "canary": 0.0}
    assert len(per_worker) == 2 and sum(per_worker) == WORKER_REQUESTS and min(per_worker) > 0, per_worker
    assert "fusionrank_ready 1.0" in scraped  # livemin over the two workers
    assert not list(files.glob("*.db")), "the operator's directory is emptied at exit"


@contextmanager
def prometheus(binary: str, work: Path, targets: list[str]) -> Iterator[str]:
    """Prometheus with the shipped rules, scraping `targets` every second."""
    port = free_port()
    rules = sorted(str(p) for p in (DEPLOY / "prometheus" / "rules").glob("*.yml"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "scrape_configs": [{"job_name": "fusionrank", "static_configs": [{"targets": targets}]}],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus /-/ready", lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200)
        yield url
    finally:
        stop(process)
        log.close()


def base_events(url: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """BASE_EVENTS outcome events per task for the candidates of one scored sample request, labels drawn at
    0.8 x the served prediction."""
    answer = httpx.post(f"{url}/v1/score", content=(BUNDLE / "sample_request.json").read_bytes(),
                        headers={"content-type": "application/json"}).json()
    versions = {k: answer["versions"][k] for k in ("model", "model_version", "calibration_version")}
    served = [(task, p) for ranked in answer["candidates"] for task, p in ranked["predictions"].items()]
    copies = BASE_EVENTS // len(answer["candidates"])
    observed = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return [
        {"task": task, "prediction": p, "label": int(rng.random() < 0.8 * p), "event_time": observed,
         **versions}
        for _ in range(copies) for task, p in served
    ]


def test_three_replicas_one_prometheus_the_fleet_ratio_is_the_sent_ratio(
    tmp_path: Path, prometheus_binary: str
) -> None:
    started = time.monotonic()
    rng = np.random.default_rng(20261206)
    with ExitStack() as stack:
        urls = [stack.enter_context(replica(tmp_path)) for _ in range(REPLICAS)]
        prom = stack.enter_context(prometheus(prometheus_binary, tmp_path, [u.split("//")[1] for u in urls]))
        wait_for("a first scrape of every replica", lambda: len(
            query(prom, 'sum by (instance) (fusionrank_feedback_events_total{task="click"})')) == REPLICAS)
        base = base_events(urls[0], rng)
        sent: dict[str, list[float]] = {}
        # Every third event names the canary arm: the fleet figure sums over arms as over replicas.
        for k, url in enumerate(urls):
            events = [dict(e, event_id=f"r{k}-{copy}-{i}", arm="canary" if i % 3 == 0 else "stable")
                      for copy in range(k + 1) for i, e in enumerate(base)]
            answer = httpx.post(f"{url}/v1/feedback", json={"events": events}, timeout=30).json()
            assert answer["accepted"] == len(events), answer["rejected"][:3]
            for e in events:
                totals = sent.setdefault(e["task"], [0.0, 0.0, 0.0])
                totals[0] += 1
                totals[1] += e["prediction"]
                totals[2] += e["label"]
        clicks = sent["click"][0]
        wait_for("every event in Prometheus", lambda: scalar(
            prom, 'sum(fusionrank_feedback_events_total{task="click"})') == clicks)
        time.sleep(2.5)  # two rule evaluations after the last scrape
        ratios = {r["metric"]["task"]: float(r["value"][1])
                  for r in query(prom, "model_task:fusionrank_calibration_ratio:1h")}
        per_instance = query(prom, 'sum by (instance) (fusionrank_feedback_events_total{task="click"})')
        per_arm = {r["metric"]["arm"]: float(r["value"][1])
                   for r in query(prom, 'sum by (arm) (fusionrank_feedback_events_total{task="click"})')}
    assert sorted(float(r["value"][1]) for r in per_instance) == [clicks / 6 * (k + 1) for k in range(REPLICAS)]
    canary_clicks = sum(1 for i, e in enumerate(base) if e["task"] == "click" and i % 3 == 0) * 6
    assert per_arm == {"canary": canary_clicks, "stable": clicks - canary_clicks} and 0 < canary_clicks < clicks
    expected = {task: p / y for task, (_, p, y) in sent.items() if y > 0}
    assert ratios.keys() == expected.keys()
    for task, ratio in expected.items():
        assert ratios[task] == pytest.approx(ratio, rel=1e-9, abs=0), task
    assert time.monotonic() - started < 60
