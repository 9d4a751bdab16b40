"""The demo's `home` policy with the ranking capabilities of `app.artifacts.policy_ranking`: version 1 changed.

`fusionrank demo` writes it as version 2 beside version 1, which stays active; the repository ships the same
policy as `policies/home/3.yaml` (its versions 1 and 2 were there first; `tests/cli/test_shipped_ranking_policy.py`
checks the file is what this module writes: regenerate it with
`python -m app.offline.demo_ranking 3 > policies/home/3.yaml`). Serve it with `policy_version` or compare it with
version 1 with `fusionrank simulate --policy 1.yaml --policy 3.yaml` on logged candidate sets. It changes:
- the utility to the product form: click^1 x (0.01 + hide)^-0.5 x (0.01 + report)^-0.2 x (1 + 0.05 x purchase x
  margin), so a candidate must be likely to be clicked *and* unlikely to be hidden;
- a creator's repeated candidates decay by 40% per earlier one (down to 20%), softer than the hard cap of 2;
- at least 4 new items (`is_new`: the caller's flag; the demo marks items younger than a day) among the first 10.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

__all__ = ["POLICY_V2", "SHIPPED_VERSION", "demo_policy_v2", "policy_text"]

POLICY_V2 = "2"  # the version `fusionrank demo` writes
SHIPPED_VERSION = "3"  # the version the repository ships in policies/home/

FRESH_MIN, FRESH_WITHIN = 4, 10
_EXPONENTS = {"click": 1.0, "hide_penalty": -0.5, "report_penalty": -0.2}


def demo_policy_v2(v1: dict[str, Any], version: str = POLICY_V2) -> dict[str, Any]:
    """The ranking version, numbered `version`, from the demo's version 1 (a policy dict as in policies/home/1.yaml)."""
    policy = copy.deepcopy(v1)
    policy["version"] = version
    policy["name"] = "home feed: product form, creator decay, fresh items"
    policy["attributes"]["is_new"] = "boolean"
    for term in policy["utility"]:
        term["weight"] = _EXPONENTS.get(term["name"], term["weight"])
    for override in policy["overrides"]:  # an exponent now: -4 would let the value terms overflow the bound
        if "hide_penalty" in override.get("weights", {}):
            override["weights"]["hide_penalty"] = -1.0
    policy["ranking"] = {
        "form": "product",
        "epsilon": 0.01,
        "diversity": [{"name": "creator_decay", "attribute": "creator_id", "decay": 0.4, "floor": 0.2}],
        "minimums": [{"name": "fresh_items", "attribute": "is_new", "equals": True, "min": FRESH_MIN,
                      "within": FRESH_WITHIN}],
    }
    policy["governance"] = {
        **policy["governance"],
        "change_note": f"Product-form utility, creator decay and {FRESH_MIN} fresh items in the first {FRESH_WITHIN}"
                       " (not active: compare with `fusionrank simulate`).",
    }
    return policy


def policy_text(policy: dict[str, Any]) -> str:
    """A policy dict as `fusionrank demo` writes its YAML file."""
    import yaml

    return str(yaml.safe_dump(policy, sort_keys=False))


if __name__ == "__main__":  # python -m app.offline.demo_ranking VERSION: the policy's YAML on stdout
    from app.offline.demo import demo_policy

    sys.stdout.write(policy_text(demo_policy_v2(demo_policy(), sys.argv[1] if len(sys.argv) > 1 else POLICY_V2)))
