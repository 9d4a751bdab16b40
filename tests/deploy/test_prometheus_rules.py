"""deploy/prometheus: the config and rules load, and the rules' unit tests pass under promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.conftest import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)


def test_config_and_rules_are_valid(promtool: str) -> None:
    done = run(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 21 rules found" in done.stdout  # recording.yml
    assert "SUCCESS: 9 rules found" in done.stdout  # alerts.yml


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
