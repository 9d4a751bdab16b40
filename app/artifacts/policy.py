"""Schema of a policy file (`policies/<surface>/<version>.yaml`): the business utility of a surface.

A policy never changes the model; it composes the model's calibrated predictions:
- ``utility``: terms ``weight x p_task`` and value terms ``weight x p_task x attribute``; the sign of
  a weight is explicit, and a task the manifest declares negative may only carry a weight <= 0;
- ``guardrails``: hard filters, each named, on a calibrated prediction (``above``/``below``) or a
  candidate attribute (``equals``/``in``/``required``); a matching candidate is removed;
- ``slate``: rules applied after ordering by utility, in file order, then ``top_k``;
- ``overrides``: weights or thresholds replaced when the request context matches;
- ``exploration``: off when absent; randomises positions of the slate with logged propensities
  (`Exploration`, applied by `app.serving.exploration`);
- ``ranking``: off when absent; utility forms, soft diversity, slate minimums and shares, request history
  (`app.artifacts.policy_ranking.RankingRules`, applied by `app.serving.ranking`);
- ``governance``: who owns and who approved it, and why it changed.

Every number is finite and bounded (`app.artifacts.bounds`), and a policy whose utility could
overflow on the most extreme attribute values a request may carry is refused (`utility_bound`,
reported at `utility` or at `overrides` when an override's weight is the cause):
the service never has to rank an infinite or NaN utility because of its policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from app.artifacts.bounds import MAX_ATTRIBUTE_MAGNITUDE, MAX_SLATE_SIZE, Probability, SlateCap, SlateSize, Weight
from app.artifacts.cascade import Cascade
from app.artifacts.common import Identifier, StrictModel
from app.artifacts.policy_ranking import RankingRules, check_ranking_references, ranking_utility_bound

__all__ = [
    "BUILT_IN_RULES",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "NON_FINITE_PREDICTION",
    "NON_FINITE_UTILITY",
    "AttributeType",
    "Exploration",
    "Governance",
    "Guardrail",
    "MaxMatchingRule",
    "MaxPerValueRule",
    "ModelRef",
    "Override",
    "PolicyFile",
    "SlateRules",
    "UtilityTerm",
    "utility_bound",
]

# "vector": a list of at most `policy_ranking.MAX_VECTOR_LENGTH` numbers, read only by `ranking.mmr`.
AttributeType = Literal["number", "string", "boolean", "vector"]

# Filter rules the service applies on its own (stage "guardrail"): a candidate whose calibrated
# prediction or utility is not finite cannot be ranked nor guarded, so it is removed. A policy may
# not name a rule after them.
NON_FINITE_PREDICTION = "non_finite_prediction"
NON_FINITE_UTILITY = "non_finite_utility"
BUILT_IN_RULES = (NON_FINITE_PREDICTION, NON_FINITE_UTILITY)


def _bounded_scalar(value: str | int | float | bool) -> str | int | float | bool:
    # `not abs(x) <= bound` is True for NaN, infinities and ints too large for a float.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not abs(value) <= MAX_ATTRIBUTE_MAGNITUDE:
        raise ValueError(
            f"{value!r:.40} is not a finite number with |x| <= {MAX_ATTRIBUTE_MAGNITUDE:g}: compare with a value"
            " a request attribute can hold"
        )
    return value


# A value compared with an attribute: a number is finite and within the attribute bound.
Scalar = Annotated[str | int | float | bool, AfterValidator(_bounded_scalar)]


class ModelRef(StrictModel):
    name: Identifier
    version: Identifier


class UtilityTerm(StrictModel):
    """`weight x p_task`, or with `attribute` the value term `weight x p_task x attribute`."""

    name: Identifier
    task: Identifier
    weight: Weight
    attribute: Identifier | None = None


class Guardrail(StrictModel):
    """A hard filter; exactly one of the two forms:
    prediction: `task` with `above` and/or `below` (removes p > above or p < below);
    attribute: `attribute` with one of `equals`, `in`, `required: true`.
    """

    name: Identifier
    task: Identifier | None = None
    above: Probability | None = None
    below: Probability | None = None
    attribute: Identifier | None = None
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    required: bool | None = None

    model_config = StrictModel.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _one_form(self) -> Guardrail:
        if (self.task is None) == (self.attribute is None):
            raise ValueError("a guardrail names exactly one of `task` (prediction filter) or `attribute`")
        if self.task is not None:
            if self.above is None and self.below is None:
                raise ValueError(f"guardrail {self.name!r} on task needs `above` and/or `below`")
            if self.equals is not None or self.in_ is not None or self.required is not None:
                raise ValueError(f"guardrail {self.name!r} on a task takes only `above`/`below`")
        else:
            forms = [self.equals is not None, self.in_ is not None, self.required is True]
            if sum(forms) != 1:
                raise ValueError(
                    f"guardrail {self.name!r} on an attribute needs exactly one of `equals`, `in`,"
                    " `required: true`"
                )
            if self.above is not None or self.below is not None:
                raise ValueError(f"guardrail {self.name!r} on an attribute cannot use `above`/`below`")
        return self


class MaxPerValueRule(StrictModel):
    """At most `max` candidates per distinct value of `attribute` (e.g. per creator)."""

    name: Identifier
    attribute: Identifier
    max: SlateSize


class MaxMatchingRule(StrictModel):
    """At most `max` candidates whose `attribute` equals `equals` (e.g. sponsored = true)."""

    name: Identifier
    attribute: Identifier
    equals: Scalar
    max: SlateCap


class SlateRules(StrictModel):
    top_k: SlateSize | None = None
    max_per_value: list[MaxPerValueRule] = Field(default_factory=list)
    max_matching: list[MaxMatchingRule] = Field(default_factory=list)


MIN_TEMPERATURE = 1e-3  # below, softmax sampling is greedy up to float64 precision: use no exploration
MAX_TEMPERATURE = 1e6  # above, every candidate is equally likely (|utility| is bounded by the policy)


class Exploration(StrictModel):
    """Randomised positions with known propensities, so logs can evaluate other policies off-line.

    Two methods, applied to the candidates that passed the guardrails and the slate rules, in utility order:
    - ``softmax``: the first ``protect_top`` positions are served in utility order; every later position is
      drawn without replacement from the remaining candidates with probability proportional to
      exp(utility / ``temperature``) (a Plackett-Luce sample);
    - ``epsilon_greedy``: at each rank in ``ranks`` (1 = the first position), with probability ``epsilon``
      the slot takes a candidate drawn uniformly from those not yet placed; every other slot takes the best
      remaining candidate.
    The draw is seeded by a hash of the request id: the same request is served the same slate.
    """

    method: Literal["softmax", "epsilon_greedy"]
    temperature: float | None = None
    protect_top: int = Field(default=0, ge=0, le=MAX_SLATE_SIZE)
    epsilon: float | None = None
    ranks: list[int] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _one_method(self) -> Exploration:
        if self.method == "softmax":
            t = self.temperature
            if t is None or not (math.isfinite(t) and MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
                raise ValueError(
                    "exploration.temperature: softmax needs a temperature in"
                    f" [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] (got {t!r}); it is in units of utility: about"
                    " the utility gap between candidates that should be served about as often"
                )
            if self.epsilon is not None or self.ranks:
                raise ValueError("exploration: `epsilon` and `ranks` belong to method epsilon_greedy; remove them"
                                 " or set method: epsilon_greedy")
            return self
        e = self.epsilon
        if e is None or not (math.isfinite(e) and 0.0 < e <= 1.0):
            raise ValueError(f"exploration.epsilon: epsilon_greedy needs an epsilon in (0, 1] (got {e!r})")
        if not self.ranks:
            raise ValueError("exploration.ranks: epsilon_greedy needs the ranks to explore (1 = first position),"
                             " e.g. ranks: [3, 6]")
        if any(r < 1 or r > MAX_SLATE_SIZE for r in self.ranks) or len(set(self.ranks)) != len(self.ranks):
            raise ValueError(f"exploration.ranks: {self.ranks!r:.80} must be distinct ranks in [1, {MAX_SLATE_SIZE}]")
        if self.temperature is not None or self.protect_top:
            raise ValueError("exploration: `temperature` and `protect_top` belong to method softmax; remove them"
                             " or set method: softmax")
        return self


class Override(StrictModel):
    """Replace term weights (by term name) or guardrail thresholds (by guardrail name) in a context.

    `when` matches when every listed context attribute equals its value.
    """

    name: Identifier
    when: dict[Identifier, Scalar] = Field(min_length=1)
    weights: dict[Identifier, Weight] = Field(default_factory=dict)
    thresholds: dict[Identifier, Probability] = Field(default_factory=dict)


class Governance(StrictModel):
    owner: str = Field(min_length=1)
    # Empty only for drafts (e.g. written by `fusionrank simulate --emit-policy`): never served.
    approved_by: list[str]
    created_at: datetime
    change_note: str = Field(min_length=1)


class PolicyFile(StrictModel):
    """One version of one surface's policy."""

    schema_version: Literal[1]
    surface: Identifier
    name: str = Field(min_length=1)
    version: Identifier
    model: ModelRef
    calibration_version: Identifier
    # Candidate attributes the policy reads, with their JSON type; requests are checked against it.
    attributes: dict[Identifier, AttributeType] = Field(default_factory=dict)
    utility: list[UtilityTerm] = Field(min_length=1)
    guardrails: list[Guardrail] = Field(default_factory=list)
    slate: SlateRules = SlateRules()
    overrides: list[Override] = Field(default_factory=list)
    exploration: Exploration | None = None
    ranking: RankingRules | None = None
    # A light first-stage bundle that passes its top_n to `model` (`app.artifacts.cascade`).
    cascade: Cascade | None = None
    governance: Governance

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyFile:
        for kind, names in (
            ("utility term", [t.name for t in self.utility]),
            ("guardrail", [g.name for g in self.guardrails]),
            ("override", [o.name for o in self.overrides]),
            (
                "slate rule",
                [r.name for r in self.slate.max_per_value] + [r.name for r in self.slate.max_matching],
            ),
        ):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} names must be unique: {dup}")
            reserved = sorted(set(names) & set(BUILT_IN_RULES))
            if reserved and kind in ("guardrail", "slate rule"):
                raise ValueError(f"{kind} name {reserved[0]!r} is the service's own filter rule: rename the {kind}")
        return self

    @model_validator(mode="after")
    def _ranking_is_consistent(self) -> PolicyFile:
        vectors = {name for name, kind in self.attributes.items() if kind == "vector"}
        slate = self.slate
        readers = ([(f"utility[{i}].attribute", t.attribute) for i, t in enumerate(self.utility)]
                   + [(f"guardrails[{i}].attribute", g.attribute) for i, g in enumerate(self.guardrails)]
                   + [(f"slate.max_per_value[{i}].attribute", r.attribute) for i, r in enumerate(slate.max_per_value)]
                   + [(f"slate.max_matching[{i}].attribute", r.attribute) for i, r in enumerate(slate.max_matching)])
        for field, name in readers:
            if name in vectors:
                raise ValueError(f"{field}: attribute {name!r} is a vector, which only ranking.mmr reads: use a"
                                 " number, string or boolean attribute")
        if self.ranking is None:
            return self
        rules = [g.name for g in self.guardrails] + [r.name for r in self.slate.max_per_value] + [
            r.name for r in self.slate.max_matching]
        check_ranking_references(self.ranking, self.utility, self.attributes, self.exploration, rules)
        largest = {t.name: abs(t.weight) for t in self.utility}
        for override in self.overrides:
            for name, weight in override.weights.items():
                if name in largest:
                    largest[name] = max(largest[name], abs(weight))
        ranking_utility_bound(self.utility, largest, self.ranking)
        return self

    @field_validator("utility")
    @classmethod
    def _utility_stays_finite(cls, terms: list[UtilityTerm]) -> list[UtilityTerm]:
        utility_bound(terms)
        return terms

    @field_validator("overrides")
    @classmethod
    def _overridden_utility_stays_finite(cls, overrides: list[Override], info: ValidationInfo) -> list[Override]:
        terms = info.data.get("utility")  # absent when the terms themselves were refused
        if terms is not None:
            utility_bound(terms, overrides)
        return overrides

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def utility_bound(terms: Sequence[UtilityTerm], overrides: Sequence[Override] = ()) -> float:
    """The largest |utility| the terms can compute on any legal request; refuses terms that can overflow.

    A dry run at the extremes: every prediction at 1 (the largest probability) and every number
    attribute at +/-`MAX_ATTRIBUTE_MAGNITUDE` (the largest the request decoder accepts) with the sign
    of its term's weight, each term at the largest |weight| the base policy or any override gives it
    (overrides can combine). The terms' magnitudes are summed in order, in float64 as the service
    computes the utility, so the first term where the sum stops being finite is named.
    """
    largest = {t.name: abs(t.weight) for t in terms}
    raised_by: dict[str, str] = {}
    for override in overrides:
        for name, weight in override.weights.items():
            if name in largest and abs(weight) > largest[name]:  # unknown names: `check_policy_against`
                largest[name], raised_by[name] = abs(weight), override.name
    total = 0.0
    for i, term in enumerate(terms):
        magnitude = largest[term.name] * (MAX_ATTRIBUTE_MAGNITUDE if term.attribute is not None else 1.0)
        total += magnitude
        if not (math.isfinite(magnitude) and math.isfinite(total)):
            which = "this term alone" if not math.isfinite(magnitude) else f"utility[0..{i}] together"
            raising = sorted({raised_by[t.name] for t in terms[: i + 1] if t.name in raised_by})
            source = f" (with the larger weights of override {', '.join(map(repr, raising))})" if raising else ""
            raise ValueError(
                f"utility[{i}] ({term.name!r}){source}: with p_{term.task} = 1 and every value-term attribute at"
                f" +/-{MAX_ATTRIBUTE_MAGNITUDE:g} (the largest a request may send), {which} overflow the utility"
                " to infinity: lower the weights of the value terms or use fewer of them"
            )
    return total
