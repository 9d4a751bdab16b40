"""The shipped memory budget fits the shipped pod: budget + idle RSS stays under the memory limit."""

from __future__ import annotations

import yaml

from app.settings import Settings
from tests.conftest import ROOT

IDLE_RSS_BYTES = 200 * 1024 * 1024  # `fusionrank serve` on the demo bundle, measured: 169-196 MB


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def test_the_memory_budget_sits_beside_the_pod_limit_and_fits_under_it() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}  # not the Secret references
    budget = int(env["FUSIONRANK_MEMORY_BUDGET_BYTES"])
    limit = _bytes(container["resources"]["limits"]["memory"])
    assert budget > 0
    assert IDLE_RSS_BYTES + budget <= 0.9 * limit  # headroom for what the budget does not count
    default = Settings.model_fields["memory_budget_bytes"].default
    assert budget == default  # the manifest states the default explicitly, next to the limit
