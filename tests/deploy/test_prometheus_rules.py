"""deploy/prometheus: the config and rules load, the rules' unit tests pass under promtool and cover every
alert firing and not firing, and every alert links its section of docs/runbooks.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY, ROOT

PROMETHEUS = DEPLOY / "prometheus"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# The alerts that watch the fleet from Prometheus' side (up, absent, changes): they fire without the pods.
FLEET_ALERTS = {"FusionrankReplicaDown", "FusionrankFleetDown", "FusionrankReadinessFlapping"}


def alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "rules" / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)


def test_config_and_rules_are_valid(promtool: str) -> None:
    done = run(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 28 rules found" in done.stdout  # recording.yml
    assert "SUCCESS: 14 rules found" in done.stdout  # alerts.yml


def test_rule_unit_tests_pass(promtool: str) -> None:
    done = run(promtool, "test", "rules", "tests/rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_a_wrong_expectation_fails(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: the same file with the ratio expectation changed must not pass."""
    text = (PROMETHEUS / "tests" / "rules_test.yml").read_text()
    assert "value: 1.25\n" in text
    text = text.replace("../rules/", f"{PROMETHEUS}/rules/").replace("value: 1.25\n", "value: 1.2\n", 1)
    broken = tmp_path / "rules_test.yml"
    broken.write_text(text)
    done = run(promtool, "test", "rules", str(broken))
    assert done.returncode != 0
    assert "model_task:fusionrank_calibration_ratio:1h" in done.stdout + done.stderr


def test_the_fleet_alerts_watch_the_scrape_job_not_the_pods() -> None:
    rules = alerts()
    assert rules.keys() >= FLEET_ALERTS
    assert rules["FusionrankReplicaDown"]["expr"].strip() == 'up{job="fusionrank"} == 0'
    assert rules["FusionrankFleetDown"]["expr"].strip().startswith("absent(")
    assert "changes(fusionrank_ready" in rules["FusionrankReadinessFlapping"]["expr"]
    assert rules["FusionrankFleetDown"]["labels"]["severity"] == "critical"
    # The job name the rules select is the scrape job's.
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [job["job_name"] for job in scrape["scrape_configs"]] == ["fusionrank"]


def test_every_alert_links_its_runbook_section() -> None:
    text = RUNBOOKS.read_text()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    for name, rule in alerts().items():
        assert rule["annotations"].get("runbook_url") == f"docs/runbooks.md#{name.lower()}", name
        assert name in sections, f"docs/runbooks.md has no `## {name}` section"
        for part in ("**What it means.**", "**How to look.**", "**What to do.**"):
            assert part in sections[name], f"docs/runbooks.md, {name}: no {part} paragraph"
    assert set(sections) == set(alerts()), "a runbook section for an alert that does not exist"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = yaml.safe_load((PROMETHEUS / "tests" / "rules_test.yml").read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = set(alerts())
    assert names - firing == set(), "alerts no promtool test expects to fire"
    assert names - silent == set(), "alerts no promtool test expects to stay silent"
