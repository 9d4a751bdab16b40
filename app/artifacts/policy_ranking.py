"""Schema of a policy's optional `ranking` block: how the utility is formed and how the slate is filled
beyond the hard caps (`app.artifacts.policy.SlateRules`).

- ``form``/``epsilon``: ``sum`` (the default: sum of the terms) or ``product``: the utility is
  ``prod_t (epsilon + p_t)^{w_t}`` over the plain terms, times ``1 + the sum of the value terms``;
- ``normalize``: term name -> ``rank`` (the term's input as its percentile in the request, in [0, 1]) or
  ``zscore`` (minus the request mean, over the request standard deviation, clipped to +/-`MAX_ZSCORE`);
- ``diversity``: position decay per attribute value, ``score x max((1 - decay)^k, floor)`` for a candidate with k
  candidates of the same value ranked above it;
- ``mmr``: greedy maximal marginal relevance over a categorical or a vector attribute;
- ``max_share``: at most a share of the answered slate matches a property;
- ``minimums``: at least ``min`` candidates matching a property among the first ``within`` positions;
- ``history``: drop candidates the request says were seen (``previously_seen``) and decay a creator's candidates
  by the negative feedback the request reports for it (``fatigue``).

Every number is bounded, so the ranking score stays finite whenever the utility is (`ranking_utility_bound`).
The serving steps live in `app.serving.ranking` (docs/policies.md, "Ranking").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from app.artifacts.bounds import MAX_ATTRIBUTE_MAGNITUDE, SlateSize
from app.artifacts.common import Identifier, StrictModel

__all__ = [
    "HISTORY_RULE",
    "MAX_FEEDBACK_CREATORS",
    "MAX_NEGATIVE_COUNT",
    "MAX_SEEN_IDS",
    "MAX_VECTOR_LENGTH",
    "MAX_ZSCORE",
    "DiversityDecay",
    "Fatigue",
    "History",
    "MaxShareRule",
    "MinimumRule",
    "MmrRule",
    "RankingRules",
    "check_ranking_references",
    "ranking_utility_bound",
]

HISTORY_RULE = "previously_seen"  # the filter rule name of `history.previously_seen`
MAX_SEEN_IDS = 1000  # request context: recently seen candidate ids
MAX_FEEDBACK_CREATORS = 1000  # request context: creators with recent negative feedback
MAX_NEGATIVE_COUNT = 1000  # per creator
MAX_VECTOR_LENGTH = 64  # a vector attribute's length
MAX_ZSCORE = 10.0  # z-score normalisation clips here: the utility bound holds for any batch size
MIN_EPSILON = 1e-6
_LOG_FLOAT_MAX = math.log(1.7e308)


class _Matching(StrictModel):
    """A property of a candidate: its `attribute` equals `equals`, or (a number) lies `below`/`above` a bound."""

    name: Identifier
    attribute: Identifier
    equals: str | int | float | bool | None = None
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> _Matching:
        given = [self.equals is not None, self.below is not None or self.above is not None]
        if sum(given) != 1:
            raise ValueError(f"rule {self.name!r}: give exactly one of `equals` or `below`/`above` (a number range)")
        for bound in (self.below, self.above, self.equals):
            if isinstance(bound, float) and not abs(bound) <= MAX_ATTRIBUTE_MAGNITUDE:
                raise ValueError(f"rule {self.name!r}: {bound!r} is not a finite number with |x| <="
                                 f" {MAX_ATTRIBUTE_MAGNITUDE:g}")
        return self


class MinimumRule(_Matching):
    """At least `min` candidates with the property among the first `within` positions (e.g. fresh items)."""

    min: SlateSize
    within: SlateSize

    @model_validator(mode="after")
    def _fits(self) -> MinimumRule:
        if self.min > self.within:
            raise ValueError(f"minimum {self.name!r}: min {self.min} is more than within {self.within}: lower `min`"
                             " or widen `within`")
        return self


class MaxShareRule(_Matching):
    """At most floor(`share` x slate length) candidates with the property in the answer; the rest are dropped."""

    share: float = Field(ge=0.0, le=1.0)


class DiversityDecay(StrictModel):
    """score x max((1 - decay)^k, floor), k = candidates of the same `attribute` value ranked above it."""

    name: Identifier
    attribute: Identifier
    decay: float = Field(gt=0.0, le=1.0)
    floor: float = Field(default=0.0, ge=0.0, le=1.0)


class MmrRule(StrictModel):
    """Greedy MMR: each next position takes the candidate maximising
    lambda x score - (1 - lambda) x (largest similarity to a candidate already placed);
    similarity is 1 for an equal value (string, boolean, number attribute) or the cosine, clipped at 0, of two
    vectors (a `vector` attribute). A missing value is similar to nothing."""

    name: Identifier
    attribute: Identifier
    lambda_: float = Field(alias="lambda", ge=0.0, le=1.0)

    model_config = StrictModel.model_config | {"populate_by_name": True}


class Fatigue(StrictModel):
    """score x max((1 - decay)^n, floor), n = the request's negative feedback count for the candidate's
    `attribute` value (its creator)."""

    attribute: Identifier
    decay: float = Field(gt=0.0, le=1.0)
    floor: float = Field(default=0.0, ge=0.0, le=1.0)


class History(StrictModel):
    previously_seen: bool = False
    fatigue: Fatigue | None = None


class RankingRules(StrictModel):
    """The `ranking` block of a policy (module docstring); absent = the plain weighted sum and caps."""

    form: Literal["sum", "product"] = "sum"
    epsilon: float | None = None
    normalize: dict[Identifier, Literal["rank", "zscore"]] = Field(default_factory=dict)
    diversity: list[DiversityDecay] = Field(default_factory=list, max_length=16)
    mmr: MmrRule | None = None
    max_share: list[MaxShareRule] = Field(default_factory=list, max_length=16)
    minimums: list[MinimumRule] = Field(default_factory=list, max_length=16)
    history: History | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RankingRules:
        if self.form == "product":
            e = self.epsilon
            if e is None or not (math.isfinite(e) and MIN_EPSILON <= e <= 1.0):
                raise ValueError(f"ranking.epsilon: the product form needs an epsilon in [{MIN_EPSILON:g}, 1] (got"
                                 f" {e!r}): the floor added to every prediction, so a zero prediction does not zero"
                                 " the utility (e.g. 0.001)")
            zscored = sorted(name for name, how in self.normalize.items() if how == "zscore")
            if zscored:
                raise ValueError(f"ranking.normalize.{zscored[0]}: a z-score can be negative, which a product form"
                                 " cannot raise to a power: use `rank` (in [0, 1]) or form: sum")
        elif self.epsilon is not None:
            raise ValueError("ranking.epsilon belongs to form: product; remove it or set form: product")
        names = ([r.name for r in self.diversity] + [r.name for r in self.max_share] + [r.name for r in self.minimums]
                 + ([self.mmr.name] if self.mmr else []))
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ranking: rule names must be unique: {dup}")
        return self

    def rule_names(self) -> list[str]:
        """The names a dropped candidate may carry (stage `slate`), and `previously_seen` (stage `guardrail`)."""
        names = [r.name for r in self.max_share]
        return names + ([HISTORY_RULE] if self.history is not None and self.history.previously_seen else [])


def check_ranking_references(
    ranking: RankingRules,
    terms: Sequence[Any],
    attributes: Mapping[str, str],
    exploration: Any,
    other_rules: Sequence[str],
) -> None:
    """Names the ranking block reads exist with the right type; minimums stay inside the unexplored head.
    Raises ValueError naming the field (the policy file validator reports it)."""
    term_names = [t.name for t in terms]
    for name in ranking.normalize:
        if name not in term_names:
            raise ValueError(f"ranking.normalize.{name}: no utility term named {name!r}; use one of {term_names}")

    def attribute(field: str, name: str, allowed: tuple[str, ...]) -> str:
        if name not in attributes:
            raise ValueError(f"{field}: attribute {name!r} is not declared in `attributes`: declare it (e.g."
                             f" `attributes: {{{name}: {allowed[0]}}}`)")
        if attributes[name] not in allowed:
            raise ValueError(f"{field}: attribute {name!r} is declared {attributes[name]}, this needs one of"
                             f" {list(allowed)}")
        return attributes[name]

    scalar = ("string", "number", "boolean")
    for i, rule in enumerate(ranking.diversity):
        attribute(f"ranking.diversity[{i}].attribute", rule.attribute, scalar)
    if ranking.mmr is not None:
        attribute("ranking.mmr.attribute", ranking.mmr.attribute, (*scalar, "vector"))
    for kind, rules in (("max_share", ranking.max_share), ("minimums", ranking.minimums)):
        for i, matching in enumerate(rules):
            ranged = matching.equals is None
            attribute(f"ranking.{kind}[{i}].attribute", matching.attribute, ("number",) if ranged else scalar)
    if ranking.history is not None and ranking.history.fatigue is not None:
        attribute("ranking.history.fatigue.attribute", ranking.history.fatigue.attribute, ("string",))
    for name in ranking.rule_names():
        if name in other_rules:
            raise ValueError(f"ranking: rule name {name!r} is also a guardrail or slate rule: rename one")
    if exploration is not None:
        for i, minimum in enumerate(ranking.minimums):
            head = exploration.protect_top if exploration.method == "softmax" else min(exploration.ranks) - 1
            if minimum.within > head:
                raise ValueError(
                    f"ranking.minimums[{i}].within: {minimum.within} reaches past the positions exploration leaves in"
                    f" order ({head}): a draw could break the minimum; keep `within` <= {head}"
                    " (softmax: protect_top; epsilon_greedy: below the first explored rank)")


def ranking_utility_bound(terms: Sequence[Any], largest: Mapping[str, float], ranking: RankingRules) -> float:
    """The largest |utility| under `ranking`'s form and normalisation; raises ValueError naming the field when it
    is not finite. largest: term name -> largest |weight| (base or any override).

    Normalised inputs lie in [0, 1] (rank) or [-MAX_ZSCORE, MAX_ZSCORE] (zscore) whatever the attribute; raw
    value-term inputs lie within +/- MAX_ATTRIBUTE_MAGNITUDE. Product form: every factor (epsilon + x)^w with x in
    [0, 1] is at most max(epsilon^w, (1 + epsilon)^w); the bound is their product times 1 + the value-term sum
    bound, checked in log space. Decays and fatigue only multiply by factors in [floor, 1] (a
    negative score is divided by them, and floor > 0 is then required: `app.serving.ranking`).
    """

    def magnitude(term: Any) -> float:
        how = ranking.normalize.get(term.name)
        scale = 1.0 if how == "rank" else MAX_ZSCORE if how == "zscore" else (
            MAX_ATTRIBUTE_MAGNITUDE if term.attribute is not None else 1.0)
        return largest[term.name] * scale

    doubling = 2.0 ** (bool(ranking.diversity) + bool(ranking.history and ranking.history.fatigue))
    if ranking.form == "sum":
        total = 0.0
        for i, term in enumerate(terms):
            total += magnitude(term)
            if not math.isfinite(total):
                raise ValueError(f"utility[{i}] ({term.name!r}): the utility can overflow to infinity: lower the"
                                 " weights of the value terms")
        if not math.isfinite(total * doubling):
            raise ValueError("ranking.diversity: a decayed negative score (x2 per decay) can overflow to infinity:"
                             " lower the weights of the value terms")
        return total
    eps = float(ranking.epsilon or MIN_EPSILON)
    log_bound, value = 0.0, 0.0
    for i, term in enumerate(terms):
        if term.attribute is not None:
            value += magnitude(term)
            if not math.isfinite(value):
                raise ValueError(f"utility[{i}] ({term.name!r}): the value terms can overflow to infinity: lower their"
                                 " weights")
            continue
        w = largest[term.name]
        log_bound += w * max(-math.log(eps), math.log1p(eps))  # |w| x the largest |log(eps + x)|
        if log_bound > _LOG_FLOAT_MAX / 2:
            raise ValueError(
                f"utility[{i}] ({term.name!r}): in the product form, (epsilon + p)^weight can reach"
                f" exp({log_bound:.3g}) with epsilon {eps:g}: use smaller exponents (|weight|) or a larger"
                " ranking.epsilon")
    bound = math.exp(log_bound) * (1.0 + value)
    if not math.isfinite(bound * doubling):
        raise ValueError("ranking.form: the product of the plain-term factors and the value terms can overflow to"
                         " infinity: lower the value-term weights or the exponents")
    return bound

