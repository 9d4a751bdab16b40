"""The served mix: counts of what the answered top k contains, by rule and term, per surface, arm and policy
version, primed at zero, the declared bands exported, and the counts adding up across worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from app.artifacts.policy import PolicyFile
from app.monitoring.mix import MixMeasures, ServedMix, mix_counts
from tests.conftest import ADMIN, ADMIN_TOKEN, POLICIES, ROOT, write_policy

MIX = "fusionrank_served_mix"


def _banded(data: dict[str, Any]) -> None:
    """The shipped policy with bands on its two slate rules."""
    data["monitoring"] = {"mix_bands": [{"rule": "sponsored_cap", "max": 0.15},
                                        {"rule": "creator_diversity", "min": 0.5}]}


def shipped_policy(edit: Callable[[dict[str, Any]], None] | None = None) -> PolicyFile:
    data = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())
    _banded(data)
    if edit is not None:
        edit(data)
    return PolicyFile.model_validate(data)


def _with_fresh(data: dict[str, Any]) -> None:
    data["attributes"]["is_new"] = "boolean"
    data["monitoring"]["mix_properties"] = [{"name": "fresh", "attribute": "is_new", "equals": True}]


def test_counts_read_only_the_answered_rows() -> None:
    policy = shipped_policy(_with_fresh)
    measures = MixMeasures.of(policy)
    assert [m[0] for m in measures.matching] == ["sponsored_cap", "fresh"]
    assert measures.per_value == (("creator_diversity", "creator_id"),)
    assert set(measures.bands) == {("sponsored_cap", "max", 0.15), ("creator_diversity", "min", 0.5)}
    attributes: dict[str, Any] = {
        "sponsored": [True, False, True, None, True, False],
        "is_new": [False, True, True, True, None, True],
        "creator_id": ["a", "b", "a", None, "c", "a"],
        "margin": np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0]),
    }
    contributions = np.array([[0.5, -0.1, 0.0, 0.0], [0.4, 0.2, -0.3, 0.0], [0.3, 0.0, 0.0, -0.2],
                              [0.2, 0.0, 0.0, 0.0], [0.1, 0.3, -0.5, 0.0], [9.0, 9.0, 9.0, 9.0]])
    ranked = np.array([2, 0, 3, 1], dtype=np.intp)  # candidates 4 and 5 were not answered
    counts = mix_counts(measures, ranked, attributes, contributions)
    assert counts.items == 4
    assert counts.matching == [2, 3]  # sponsored: 2 and 0; fresh: 2, 3, 1 (None is not a match)
    assert counts.distinct == [2] and counts.largest == [2]  # creators a, a, (missing), b
    np.testing.assert_allclose(counts.positive, [1.4, 0.2, 0.0, 0.0])
    np.testing.assert_allclose(counts.negative, [0.0, 0.1, 0.3, 0.2])
    one = mix_counts(measures, np.array([4], dtype=np.intp), attributes, contributions)
    assert (one.items, one.matching, one.distinct) == (1, [1, 0], [1])
    # a number attribute: NaN is missing
    numbers = MixMeasures((), (("margins", "margin"),), measures.terms, ())
    got = mix_counts(numbers, np.array([0, 1, 2, 5], dtype=np.intp), attributes, contributions)
    assert (got.distinct, got.largest) == ([3], [1])


def _samples(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    return {name: float(value) for name, _, value in (line.rpartition(" ") for line in text.splitlines())
            if name.startswith(("fusionrank_served_mix", "fusionrank_served_term", "fusionrank_mix_band"))
            and not name.partition("{")[0].endswith("_created")}


def series(name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted({"arm": "stable", "policy_version": "1", "surface": "home",
                                                         **labels}.items()))
    return f"{name}{{{inner}}}"


def test_the_service_counts_what_it_answered_from_zero(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], store_copy: tuple[Path, Path],
) -> None:
    store, policies = store_copy
    write_policy(policies, "1", _banded)
    write_policy(policies, "2", lambda d: d.update(monitoring={"mix_bands": [{"rule": "sponsored_cap", "min": 0.05,
                                                                              "max": 0.3}]}))
    client = client_factory(store=store, policies=policies, admin_tokens={"ops": ADMIN_TOKEN})
    before = _samples(client)
    items = series(f"{MIX}_items_total")
    sponsored = series(f"{MIX}_matching_total", rule="sponsored_cap")
    creators = series(f"{MIX}_distinct_total", rule="creator_diversity")
    largest = series(f"{MIX}_largest_value_total", rule="creator_diversity")
    terms = [series("fusionrank_served_term_contribution_total", term=t, sign=s)
             for t in ("click", "purchase_margin", "hide_penalty", "report_penalty") for s in ("positive", "negative")]
    assert {k: before[k] for k in (items, sponsored, creators, largest, *terms)} == dict.fromkeys(
        (items, sponsored, creators, largest, *terms), 0.0)
    assert before[series("fusionrank_mix_band_max", rule="sponsored_cap")] == 0.15
    assert before[series("fusionrank_mix_band_min", rule="creator_diversity")] == 0.5
    assert series("fusionrank_mix_band_min", rule="sponsored_cap") not in before  # no band declared

    by_id = {c["id"]: c["attributes"] for c in sample_request["candidates"]}
    sample_request["options"] = {"debug": True}
    answered: list[dict[str, Any]] = []
    for _ in range(3):
        body = client.post("/v1/score", json=sample_request).json()
        answered += body["candidates"]
    after = _samples(client)
    assert after[items] == len(answered) == 60
    assert after[sponsored] == sum(by_id[c["id"]].get("sponsored") is True for c in answered)
    one = answered[:20]
    creator_counts = Counter(by_id[c["id"]]["creator_id"] for c in one)
    assert after[creators] == 3 * len(creator_counts) and after[largest] == 3 * max(creator_counts.values())
    for term in ("click", "hide_penalty"):
        contributions = [t["contribution"] for c in answered for t in c["debug"]["terms"] if t["name"] == term]
        net = after[series("fusionrank_served_term_contribution_total", term=term, sign="positive")] - after[
            series("fusionrank_served_term_contribution_total", term=term, sign="negative")]
        assert net == pytest.approx(sum(contributions), rel=1e-9)
    assert after[series("fusionrank_served_term_contribution_total", term="hide_penalty", sign="positive")] == 0

    # A canary on policy 2: its bands are exported under arm canary, its answers counted apart.
    done = client.post("/admin/surfaces/home/canary", headers=ADMIN, json={"policy_version": "2", "fraction": 0.5})
    assert done.status_code == 200, done.text
    arms: Counter[str] = Counter()
    for user in range(20):
        sample_request["context"]["user_id"] = f"user-{user}"
        arms[client.post("/v1/score", json=sample_request).json()["arm"]] += 1
    assert arms["canary"] > 0 and arms["stable"] > 0
    canary = _samples(client)
    assert canary[series("fusionrank_mix_band_min", arm="canary", policy_version="2", rule="sponsored_cap")] == 0.05
    assert canary[series("fusionrank_mix_band_max", rule="sponsored_cap")] == 0.15  # stable keeps its own
    assert canary[series(f"{MIX}_items_total", arm="canary", policy_version="2")] == 20 * arms["canary"]
    assert canary[items] == 60 + 20 * arms["stable"]


WORKER = """
import json, sys, numpy as np, yaml
from prometheus_client import CollectorRegistry
from app.artifacts.policy import PolicyFile
from app.monitoring.mix import ServedMix, mix_counts
policy = PolicyFile.model_validate(yaml.safe_load(open(sys.argv[1]).read()))
mix = ServedMix(CollectorRegistry())
series = mix.series("home", "stable", policy)
attributes = {"sponsored": [True, False, True], "creator_id": ["a", "a", "b"], "margin": np.zeros(3),
              "eligible": [True] * 3}
contributions = np.array([[1.0, 0.0, -0.5, 0.0], [2.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
for _ in range(int(sys.argv[2])):
    series.add(mix_counts(series.measures, np.array([0, 1, 2]), attributes, contributions))
"""


def test_counts_add_up_across_worker_processes(tmp_path: Path) -> None:
    """Two worker processes in multiprocess mode: one merged scrape holds the sum of both workers' counts."""
    files = tmp_path / "multiproc"
    files.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(files), "PYTHONPATH": str(ROOT)}
    for answers in (3, 5):
        subprocess.run([sys.executable, "-c", WORKER, str(POLICIES / "home" / "1.yaml"), str(answers)], env=env,
                       check=True, timeout=60, cwd=ROOT)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(files))  # type: ignore[no-untyped-call]
    values = {(s.name, json.dumps(s.labels, sort_keys=True)): s.value for m in registry.collect() for s in m.samples}

    def value(name: str, **labels: str) -> float:
        key = json.dumps({"arm": "stable", "policy_version": "1", "surface": "home", **labels}, sort_keys=True)
        return values[(name, key)]

    assert len(list(files.glob("counter_*.db"))) == 2
    assert value(f"{MIX}_items_total") == 8 * 3
    assert value(f"{MIX}_matching_total", rule="sponsored_cap") == 8 * 2
    assert value(f"{MIX}_distinct_total", rule="creator_diversity") == 8 * 2
    assert value("fusionrank_served_term_contribution_total", term="click", sign="positive") == 8 * 7.0
    assert value("fusionrank_served_term_contribution_total", term="hide_penalty", sign="negative") == 8 * 0.5


def test_a_reloaded_policy_file_gets_its_own_measures() -> None:
    mix = ServedMix(CollectorRegistry())
    first = mix.series("home", "stable", shipped_policy())
    assert mix.series("home", "stable", shipped_policy()) is not first  # another file object: measured again
    policy = shipped_policy()
    assert mix.series("home", "stable", policy) is mix.series("home", "stable", policy)


BAND_WORKER = """
import sys
from prometheus_client import CollectorRegistry
from app.monitoring.mix import NEUTRAL_BOUND, ServedMix, _withdraw
mix = ServedMix(CollectorRegistry())
mix.band_max.labels("home", "stable", "1", "sponsored_cap").set(0.15)
mix.band_min.labels("home", "stable", "1", "creator_diversity").set(0.5)
if sys.argv[1] == "moved-on":  # this worker now serves policy 2 only
    for bound, gauge in (("min", mix.band_min), ("max", mix.band_max)):
        _withdraw(gauge, NEUTRAL_BOUND[bound])
    mix.band_max.labels("home", "stable", "2", "sponsored_cap").set(0.3)
"""


def _bands(files: Path) -> dict[tuple[str, str, str], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(files))  # type: ignore[no-untyped-call]
    return {(s.name, s.labels["policy_version"], s.labels["rule"]): s.value for m in registry.collect()
            for s in m.samples if s.name.startswith("fusionrank_mix_band")}


def test_a_band_no_longer_served_is_neutral_in_multiprocess_mode(tmp_path: Path) -> None:
    """A value file cannot forget a series: a worker that moved on leaves [0, 1], which a worker still serving
    the policy overrides (max of the lower bounds, min of the upper bounds)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    alone, both = tmp_path / "alone", tmp_path / "both"
    for files, workers in ((alone, ["moved-on"]), (both, ["moved-on", "still-serving"])):
        files.mkdir()
        for worker in workers:
            subprocess.run([sys.executable, "-c", BAND_WORKER, worker], check=True, timeout=60, cwd=ROOT,
                           env={**env, "PROMETHEUS_MULTIPROC_DIR": str(files)})
    assert _bands(alone) == {
        ("fusionrank_mix_band_max", "1", "sponsored_cap"): 1.0,
        ("fusionrank_mix_band_min", "1", "creator_diversity"): 0.0,
        ("fusionrank_mix_band_max", "2", "sponsored_cap"): 0.3,
    }
    assert _bands(both) == {
        ("fusionrank_mix_band_max", "1", "sponsored_cap"): 0.15,
        ("fusionrank_mix_band_min", "1", "creator_diversity"): 0.5,
        ("fusionrank_mix_band_max", "2", "sponsored_cap"): 0.3,
    }


def test_the_ranking_block_s_rules_are_measured_and_bandable() -> None:
    """Minimums and max shares by their share (an equals or a number range), diversity decay and a categorical
    MMR by their coverage; a band may name any of them."""
    from app.offline.demo_ranking import demo_policy_v2

    data = demo_policy_v2(yaml.safe_load((POLICIES / "home" / "1.yaml").read_text()))
    data["ranking"]["max_share"] = [{"name": "cheap", "attribute": "margin", "below": 1.0, "share": 0.5}]
    data["monitoring"] = {"mix_bands": [{"rule": "fresh_items", "min": 0.15}, {"rule": "creator_decay", "min": 0.5},
                                        {"rule": "cheap", "max": 0.5}]}
    measures = MixMeasures.of(PolicyFile.model_validate(data))
    assert [m.name for m in measures.matching] == ["sponsored_cap", "cheap", "fresh_items"]
    assert [name for name, _ in measures.per_value] == ["creator_diversity", "creator_decay"]
    attributes: dict[str, Any] = {
        "sponsored": [False] * 4, "is_new": [True, False, None, True], "creator_id": ["a", "b", "a", "c"],
        "margin": np.array([0.5, 2.0, np.nan, 0.99]),
    }
    counts = mix_counts(measures, np.arange(4, dtype=np.intp), attributes, np.zeros((4, 4)))
    assert counts.matching == [0, 2, 2]  # cheap: 0.5 and 0.99 (missing is not cheap); fresh: 2
    assert counts.distinct == [3, 3]
    data["monitoring"]["mix_bands"].append({"rule": "creator_mmr", "min": 0.5})
    with pytest.raises(ValueError, match="'creator_mmr' is not a slate rule"):
        PolicyFile.model_validate(data)
    data["ranking"]["mmr"] = {"name": "creator_mmr", "attribute": "creator_id", "lambda": 0.7}
    assert MixMeasures.of(PolicyFile.model_validate(data)).per_value[-1] == ("creator_mmr", "creator_id")
