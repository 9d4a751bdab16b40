"""deploy/grafana: the dashboard refers to the provisioned datasource and its own variables only."""

from __future__ import annotations

import json
import re

import yaml

from tests.deploy.conftest import DEPLOY, ROOT

GRAFANA = DEPLOY / "grafana"


def test_dashboard_panels_use_the_provisioned_datasource_and_defined_variables() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "fusionrank.json").read_text())
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"] for p in panels).lower()
    for wanted in ("calibration ratio", "ece", "reliability", "segment", "psi", "latency by stage", "filter",
                   "active versions", "shedding", "deadline", "in-flight", "auth failures", "refused swaps",
                   "served mix", "term contribution"):
        assert wanted in titles, wanted
    for panel in panels:
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= variables, (panel["title"], used - variables)


def test_provisioning_points_at_the_mounted_dashboards() -> None:
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "fusionrank.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert f"./deploy/grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
