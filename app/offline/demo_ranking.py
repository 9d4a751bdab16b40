"""Version 2 of the demo's `home` policy: version 1 with the ranking capabilities of `app.artifacts.policy_ranking`.

`fusionrank demo` writes it beside version 1, which stays active: serve it with `policy_version: "2"` or compare the
two with `fusionrank simulate --policy 1.yaml --policy 2.yaml` on the demo logs (`--logs`). It changes:
- the utility to the product form: click^1 x (0.01 + hide)^-0.5 x (0.01 + report)^-0.2 x (1 + 0.05 x purchase x
  margin), so a candidate must be likely to be clicked *and* unlikely to be hidden;
- a creator's repeated candidates decay by 40% per earlier one (down to 20%), softer than the hard cap of 2;
- at least 3 new items (`is_new`) among the first 10.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["POLICY_V2", "demo_policy_v2"]

POLICY_V2 = "2"

_EXPONENTS = {"click": 1.0, "hide_penalty": -0.5, "report_penalty": -0.2}


def demo_policy_v2(v1: dict[str, Any]) -> dict[str, Any]:
    """Version 2 from the demo's version 1 (a policy dict as written to policies/home/1.yaml)."""
    policy = copy.deepcopy(v1)
    policy["version"] = POLICY_V2
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
        "minimums": [{"name": "fresh_items", "attribute": "is_new", "equals": True, "min": 3, "within": 10}],
    }
    policy["governance"] = {
        **policy["governance"],
        "change_note": "Product-form utility, creator decay and 3 fresh items in the first 10 (not active: compare"
                       " with `fusionrank simulate`).",
    }
    return policy
