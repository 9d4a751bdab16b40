"""Schema of a policy's `monitoring` section: which properties of the served top k are counted, and the
band each measure must stay in (`app.monitoring.mix` counts them, deploy/prometheus alerts on the bands).

    monitoring:
      mix_properties:            # counted in the served mix; no slate rule needed
        - name: fresh
          attribute: is_new
          equals: true
      mix_bands:                 # one per measured rule or property
        - rule: sponsored_cap    # a max_matching rule or a mix property: share of answered items matching it
          max: 0.15
        - rule: creator_diversity   # a max_per_value rule: distinct values / answered items (coverage)
          min: 0.6

Every slate and ranking rule is measured whether or not it has a band: a `max_matching` rule, a
`ranking.max_share` or `ranking.minimums` rule (and every mix property) by its *share*, the answered items
with its property over all answered items; a `max_per_value` rule, a `ranking.diversity` rule or a
categorical `ranking.mmr` by its *coverage*, the distinct (non-missing) values over the answered items. A
band bounds that measure in [0, 1]. Names come from the policy, so the metric labels they become are bounded:
at most `MAX_MIX_PROPERTIES` properties and `MAX_MIX_BANDS` bands.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from pydantic import Field, field_validator, model_validator

from app.artifacts.bounds import MAX_ATTRIBUTE_MAGNITUDE, Probability
from app.artifacts.common import Identifier, StrictModel

__all__ = ["MAX_MIX_BANDS", "MAX_MIX_PROPERTIES", "MixBand", "MixProperty", "PolicyMonitoring", "check_monitoring"]

MAX_MIX_PROPERTIES = 16
MAX_MIX_BANDS = 32


class MixProperty(StrictModel):
    """A property counted in the served mix: the candidate's `attribute` equals `equals` (same JSON type)."""

    name: Identifier
    attribute: Identifier
    equals: str | bool | int | float

    @field_validator("equals")
    @classmethod
    def _bounded(cls, value: str | bool | int | float) -> str | bool | int | float:
        # `not abs(x) <= bound` also holds for NaN, infinities and ints too large for a float
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
            abs(value) <= MAX_ATTRIBUTE_MAGNITUDE
        ):
            raise ValueError(f"{value!r:.40} is not a finite number with |x| <= {MAX_ATTRIBUTE_MAGNITUDE:g}")
        return value


class MixBand(StrictModel):
    """The band a rule's measure (share or coverage, in [0, 1]) must stay in; `min` and/or `max`."""

    rule: Identifier
    min: Probability | None = None
    max: Probability | None = None

    @model_validator(mode="after")
    def _a_band(self) -> MixBand:
        if self.min is None and self.max is None:
            raise ValueError(f"mix band {self.rule!r} needs `min` and/or `max` (shares in [0, 1])")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"mix band {self.rule!r}: min {self.min:g} > max {self.max:g}; swap them")
        return self


class PolicyMonitoring(StrictModel):
    """What the service counts of this policy's served mix, and the bands its alert watches."""

    mix_properties: list[MixProperty] = Field(default_factory=list, max_length=MAX_MIX_PROPERTIES)
    mix_bands: list[MixBand] = Field(default_factory=list, max_length=MAX_MIX_BANDS)


def _json_type(value: str | bool | int | float) -> str:
    return "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"


def check_monitoring(
    monitoring: PolicyMonitoring, attributes: Mapping[str, str], matching_rules: Collection[str],
    per_value_rules: Collection[str],
) -> None:
    """Cross-checks against the rest of the policy; raises ValueError naming the field and the fix."""
    slate_rules = {*matching_rules, *per_value_rules}
    seen: set[str] = set()
    for i, prop in enumerate(monitoring.mix_properties):
        where = f"monitoring.mix_properties[{i}]"
        if prop.name in slate_rules or prop.name in seen:
            raise ValueError(f"{where}.name: {prop.name!r} is already a slate or ranking rule or a mix property;"
                             " rename it")
        seen.add(prop.name)
        if prop.attribute not in attributes:
            raise ValueError(f"{where}.attribute: {prop.attribute!r} is not declared in `attributes`; declare it"
                             f" (e.g. `attributes: {{{prop.attribute}: boolean}}`) or use one of {sorted(attributes)}")
        kind = attributes[prop.attribute]
        if kind != _json_type(prop.equals):
            raise ValueError(f"{where}.equals: {prop.equals!r} is a {_json_type(prop.equals)}, attribute"
                             f" {prop.attribute!r} is declared {kind}: it would never match; compare with a {kind}")
    measured = slate_rules | seen
    banded: set[str] = set()
    for i, band in enumerate(monitoring.mix_bands):
        if band.rule not in measured:
            raise ValueError(f"monitoring.mix_bands[{i}].rule: {band.rule!r} is not a slate rule, a ranking rule"
                             " (max_share, minimums, diversity, a categorical mmr) nor a mix property;"
                             f" use one of {sorted(measured)} or declare it in monitoring.mix_properties")
        if band.rule in banded:
            raise ValueError(f"monitoring.mix_bands[{i}].rule: {band.rule!r} has two bands; keep one")
        banded.add(band.rule)
