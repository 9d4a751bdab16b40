"""A readable difference between two policy files, item by item (terms, guardrails, slate, ...).

Items are matched by name (a utility term, a guardrail, a slate rule, an override), so a reordered
file shows no change and a renamed term shows as one removed and one added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.artifacts.policy import PolicyFile

__all__ = ["PolicyDelta", "diff_policies"]

SECTIONS = (
    "policy", "attributes", "utility", "guardrails", "slate", "ranking", "overrides", "monitoring", "governance",
)

# section -> item -> field -> value
Flat = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class PolicyDelta:
    """One difference: `change` is added, removed or changed; `old`/`new` are rendered values."""

    section: str
    item: str
    field: str
    change: str
    old: str
    new: str


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _flatten(policy: PolicyFile) -> Flat:
    data = policy.to_yaml_dict()
    flat: Flat = {section: {} for section in SECTIONS}
    flat["policy"]["file"] = {
        "surface": data["surface"], "version": data["version"], "name": data["name"],
        "model": f"{data['model']['name']}/{data['model']['version']}",
        "calibration_version": data["calibration_version"],
    }
    for name, kind in data.get("attributes", {}).items():
        flat["attributes"][name] = {"type": kind}
    for section in ("utility", "guardrails"):
        for item in data.get(section, []):
            flat[section][item["name"]] = {k: v for k, v in item.items() if k != "name"}
    slate = data.get("slate", {})
    flat["slate"]["top_k"] = {"value": slate.get("top_k")}
    for kind in ("max_per_value", "max_matching"):
        for rule in slate.get(kind, []):
            flat["slate"][rule["name"]] = {"rule": kind, **{k: v for k, v in rule.items() if k != "name"}}
    if "exploration" in data:
        flat["slate"]["exploration"] = dict(data["exploration"])
    _flatten_ranking(data.get("ranking"), flat["ranking"])
    for override in data.get("overrides", []):
        fields: dict[str, Any] = {}
        for part in ("when", "weights", "thresholds"):
            for key, value in override.get(part, {}).items():
                fields[f"{part}.{key}"] = value
        flat["overrides"][override["name"]] = fields
    monitoring = data.get("monitoring", {})  # the served mix's properties and bands (app.artifacts.mix_bands)
    for prop in monitoring.get("mix_properties", []):
        flat["monitoring"][prop["name"]] = {"property": f"{prop['attribute']} = {_show(prop['equals'])}"}
    for band in monitoring.get("mix_bands", []):
        flat["monitoring"][f"band {band['rule']}"] = {k: band.get(k) for k in ("min", "max")}
    flat["governance"]["governance"] = dict(data["governance"])
    return flat


def _flatten_ranking(ranking: dict[str, Any] | None, out: dict[str, dict[str, Any]]) -> None:
    """The `ranking` block by item: the form, each normalised term, each named rule, the history."""
    if ranking is None:
        return
    out["form"] = {"form": ranking.get("form", "sum"), "epsilon": ranking.get("epsilon")}
    for term, how in ranking.get("normalize", {}).items():
        out[f"normalize.{term}"] = {"method": how}
    for kind in ("diversity", "max_share", "minimums"):
        for rule in ranking.get(kind, []):
            out[rule["name"]] = {"rule": kind, **{k: v for k, v in rule.items() if k != "name"}}
    if "mmr" in ranking:
        out[ranking["mmr"]["name"]] = {"rule": "mmr", **{k: v for k, v in ranking["mmr"].items() if k != "name"}}
    history = ranking.get("history") or {}
    out["history"] = {"previously_seen": history.get("previously_seen", False),
                      **{f"fatigue.{k}": v for k, v in (history.get("fatigue") or {}).items()}}


def diff_policies(old: PolicyFile, new: PolicyFile) -> list[PolicyDelta]:
    """Every difference from `old` to `new`, in section order, then in file order."""
    a, b = _flatten(old), _flatten(new)
    out: list[PolicyDelta] = []
    for section in SECTIONS:
        items = list(a[section]) + [name for name in b[section] if name not in a[section]]
        for item in items:
            before, after = a[section].get(item), b[section].get(item)
            if before is None or after is None:
                change, present = ("added", after) if before is None else ("removed", before)
                summary = " ".join(f"{k}={_show(v)}" for k, v in (present or {}).items())
                old_text, new_text = ("-", summary) if change == "added" else (summary, "-")
                out.append(PolicyDelta(section, item, "", change, old_text, new_text))
                continue
            for field in list(before) + [f for f in after if f not in before]:
                old_value, new_value = before.get(field), after.get(field)
                if old_value != new_value:
                    change = "changed" if field in before and field in after else (
                        "added" if field in after else "removed"
                    )
                    out.append(PolicyDelta(section, item, field, change, _show(old_value), _show(new_value)))
    return out
