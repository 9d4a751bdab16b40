"""Count what the served top k contains: the share of each slate rule's property, the coverage of each
per-value rule's attribute, and each utility term's summed contribution, per surface, arm and policy version.

Labels are bounded: `rule` and `term` are names from the served policies (a policy has at most a few
slate rules, 16 of each ranking rule kind and `MAX_MIX_PROPERTIES` mix properties), never attribute values
from a request. PromQL turns the counters into ratios over any window and any number of workers and
replicas (deploy/prometheus/rules/recording.yml, group fusionrank-served-mix):
    share    = matching / items       (max_matching, ranking max_share and minimums, mix properties)
    coverage = distinct / items       (max_per_value, ranking diversity, categorical mmr: distinct
                                       non-missing values per answered item)
    largest  = largest_value / items  (the same rules: share of the most frequent value)
    mean term contribution per answered item = (positive - negative) / items
A contribution can have either sign (negative weights, negative attribute values) and a counter only
grows, so the positive parts and the magnitudes of the negative parts are counted apart (`sign`).
The bands a policy declares (`monitoring.mix_bands`) are exported as the `fusionrank_mix_band_min` and
`fusionrank_mix_band_max` gauges of each served (surface, arm, policy version), so one shipped alert
compares every measure with its policy's own band: a band changes with the policy that declares it, no
rule file is regenerated. A multiprocess value file cannot forget a series, so a policy that stops serving
leaves its bands at the neutral [0, 1] (min 0 merged with `livemax`, max 1 with `livemin`: a worker that
still serves the policy wins), which no share or coverage can leave.
"""

from __future__ import annotations

import warnings
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass
from operator import countOf, itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge

from app.artifacts.policy import PolicyFile
from app.monitoring.multiproc import multiprocess_dir
from app.serving.attributes import AttributeColumns, equals_mask, range_mask
from app.serving.bundle import ServingSnapshot
from app.serving.columns import Values
from app.serving.scorer import ScoreOutcome

__all__ = ["MIX_LABELS", "NEUTRAL_BOUND", "Matching", "MixCounts", "MixMeasures", "ServedMix", "mix_counts"]

MIX_LABELS = ("surface", "arm", "policy_version")
NEUTRAL_BOUND = {"min": 0.0, "max": 1.0}  # a withdrawn band: no share or coverage lies outside [0, 1]
Float = npt.NDArray[np.float64]


class Matching(NamedTuple):
    """A property measured by its share: `attribute` equals `equals`, or (a number) lies below / above."""

    name: str
    attribute: str
    equals: Any = None
    below: float | None = None
    above: float | None = None


@dataclass(frozen=True, slots=True)
class MixMeasures:
    """What a policy's served mix is measured by, read once from its file."""

    matching: tuple[Matching, ...]  # slate max_matching, ranking max_share and minimums, mix properties: share
    per_value: tuple[tuple[str, str], ...]  # (rule name, attribute): coverage and largest value
    terms: tuple[str, ...]  # utility term names, in the policy's order (the contributions' columns)
    bands: tuple[tuple[str, str, float], ...]  # (rule, "min" | "max", bound)

    @classmethod
    def of(cls, policy: PolicyFile) -> MixMeasures:
        slate, ranking, monitoring = policy.slate, policy.ranking, policy.monitoring
        matching = [Matching(r.name, r.attribute, r.equals) for r in slate.max_matching]
        per_value = [(r.name, r.attribute) for r in slate.max_per_value]
        if ranking is not None:
            matching += [Matching(r.name, r.attribute, r.equals, r.below, r.above)
                         for r in (*ranking.max_share, *ranking.minimums)]
            per_value += [(r.name, r.attribute) for r in ranking.diversity]
            mmr = ranking.mmr
            if mmr is not None and policy.attributes.get(mmr.attribute) != "vector":  # vectors have no values
                per_value.append((mmr.name, mmr.attribute))
        bands: list[tuple[str, str, float]] = []
        if monitoring is not None:
            matching += [Matching(p.name, p.attribute, p.equals) for p in monitoring.mix_properties]
            for band in monitoring.mix_bands:
                bands += [(band.rule, bound, value) for bound, value in (("min", band.min), ("max", band.max))
                          if value is not None]
        return cls(tuple(matching), tuple(per_value), tuple(t.name for t in policy.utility), tuple(bands))


@dataclass(frozen=True, slots=True)
class MixCounts:
    """One answer's mix: what the counters add."""

    items: int  # answered candidates
    matching: list[int]  # [M] answered items with each matching property
    distinct: list[int]  # [P] distinct non-missing values of each per-value rule's attribute
    largest: list[int]  # [P] answered items holding the most frequent value
    positive: Float  # [K] sum of each term's positive contributions over the answered items
    negative: Float  # [K] sum of the magnitudes of its negative contributions


def mix_counts(
    measures: MixMeasures, ranked: npt.NDArray[np.intp], attributes: AttributeColumns, contributions: Float
) -> MixCounts:
    """ranked: answered candidate indices [k]; attributes: the request's columns [B]; contributions [B, K].

    Only the k answered rows are read, so the cost does not grow with the candidates scored.
    """
    cache: dict[str, Values] = {}

    def answered(name: str) -> Values:
        if name not in cache:
            cache[name] = _gather(attributes[name], ranked)
        return cache[name]

    matching = [_count(answered(m.attribute), m) for m in measures.matching]
    distinct, largest = [], []
    for _, attribute in measures.per_value:
        tally = _tally(answered(attribute))
        distinct.append(len(tally))
        largest.append(max(tally, default=0))
    top = contributions[ranked]
    positive = np.maximum(top, 0.0).sum(axis=0)
    # |negative parts| = positive parts - sum; clipped: rounding must not make an exact 0 a tiny negative
    negative = np.maximum(positive - top.sum(axis=0), 0.0)
    return MixCounts(len(ranked), matching, distinct, largest, positive, negative)


def _count(values: Values, matching: Matching) -> int:
    """How many answered values have the property: equal to `equals` with its JSON type
    (`app.serving.attributes.equals_mask`), or a number below / above the bounds (a missing value never has it)."""
    value = matching.equals
    if value is None:
        return int(np.count_nonzero(range_mask(values, matching.below, matching.above)))
    if isinstance(value, (bool, str)) and isinstance(values, list):
        # A list column holds only strings or only booleans (and None): `==` cannot cross the types there
        # (True == 1 needs a number, and number attributes are arrays), so counting by `==` is exact.
        return countOf(values, value)
    return int(np.count_nonzero(equals_mask(values, value)))


def _gather(column: Values, ranked: npt.NDArray[np.intp]) -> Values:
    if isinstance(column, np.ndarray):
        return column[ranked]
    if len(ranked) == 1:
        return [column[int(ranked[0])]]
    return list(itemgetter(*ranked.tolist())(column)) if len(ranked) else []


def _tally(values: Values) -> list[int]:
    """How many answered items hold each distinct non-missing value (missing: NaN or None)."""
    if isinstance(values, np.ndarray):
        present = values[~np.isnan(values)]
        return np.unique(present, return_counts=True)[1].tolist() if present.size else []
    tally = Tally(values)  # counted in C; None (missing) is dropped after
    tally.pop(None, None)
    return list(tally.values())


class _Series:
    """The counter children of one (surface, arm, policy) triple, resolved once (`labels()` is a dict lookup
    under a lock: the hot path pays it once per triple, not once per increment)."""

    def __init__(self, mix: ServedMix, labels: tuple[str, str, str], policy: PolicyFile) -> None:
        self.policy = policy
        self.measures = measures = MixMeasures.of(policy)
        self.items = mix.items.labels(*labels)
        self.matching = [mix.matching.labels(*labels, m.name) for m in measures.matching]
        self.distinct = [mix.distinct.labels(*labels, name) for name, _ in measures.per_value]
        self.largest = [mix.largest.labels(*labels, name) for name, _ in measures.per_value]
        self.positive = [mix.contribution.labels(*labels, term, "positive") for term in measures.terms]
        self.negative = [mix.contribution.labels(*labels, term, "negative") for term in measures.terms]

    def add(self, counts: MixCounts) -> None:
        self.items.inc(counts.items)
        for children, values in ((self.matching, counts.matching), (self.distinct, counts.distinct),
                                 (self.largest, counts.largest)):
            for child, value in zip(children, values, strict=True):
                if value:
                    child.inc(value)
        for children, sums in ((self.positive, counts.positive), (self.negative, counts.negative)):
            for child, total in zip(children, sums.tolist(), strict=True):
                if total > 0.0:
                    child.inc(total)


class ServedMix:
    """The served-mix counters and the declared bands, on the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.items = Counter(
            "fusionrank_served_mix_items", "Candidates answered (the served top k), by surface, arm and policy",
            MIX_LABELS, registry=r,
        )
        self.matching = Counter(
            "fusionrank_served_mix_matching",
            "Answered candidates with a rule's property (a max_matching rule's attribute = value, or a policy's"
            " monitoring.mix_properties); share = this / fusionrank_served_mix_items", [*MIX_LABELS, "rule"],
            registry=r,
        )
        self.distinct = Counter(
            "fusionrank_served_mix_distinct",
            "Distinct non-missing values of a max_per_value rule's attribute in each answer, summed over answers;"
            " coverage = this / fusionrank_served_mix_items", [*MIX_LABELS, "rule"], registry=r,
        )
        self.largest = Counter(
            "fusionrank_served_mix_largest_value",
            "Answered candidates holding the most frequent value of a max_per_value rule's attribute in each"
            " answer, summed over answers", [*MIX_LABELS, "rule"], registry=r,
        )
        self.contribution = Counter(
            "fusionrank_served_term_contribution",
            "Sum over answered candidates of a utility term's contribution: its positive parts (sign=positive)"
            " and the magnitudes of its negative parts (sign=negative)", [*MIX_LABELS, "term", "sign"],
            registry=r,
        )
        self.band_min = Gauge(
            "fusionrank_mix_band_min", "Lower bound a served policy declares for a mix measure (monitoring.mix_bands)",
            [*MIX_LABELS, "rule"], multiprocess_mode="livemax", registry=r,
        )
        self.band_max = Gauge(
            "fusionrank_mix_band_max", "Upper bound a served policy declares for a mix measure (monitoring.mix_bands)",
            [*MIX_LABELS, "rule"], multiprocess_mode="livemin", registry=r,
        )
        self._series: dict[tuple[str, str, str], _Series] = {}

    def series(self, surface: str, arm: str, policy: PolicyFile) -> _Series:
        """The children of (surface, arm, policy version), created at zero on first use."""
        key = (surface, arm, policy.version)
        found = self._series.get(key)
        if found is None or found.policy is not policy:  # a reloaded file may measure other rules
            found = self._series[key] = _Series(self, key, policy)
        return found

    def observe(self, surface: str, arm: str, outcome: ScoreOutcome) -> None:
        """Add one answer's mix (`AnswerMetrics.answered` calls it)."""
        series = self.series(surface, arm, outcome.binding.policy.file)
        if outcome.ranked.size:
            series.add(mix_counts(series.measures, outcome.ranked, outcome.attributes, outcome.contributions))

    def observe_snapshot(self, snapshot: ServingSnapshot) -> None:
        """Create every served triple's series at zero (an alert needs them before the first answer) and
        export the bands of the policies served now, stable and canary."""
        bands = {"min": self.band_min, "max": self.band_max}
        for bound, gauge in bands.items():
            _withdraw(gauge, NEUTRAL_BOUND[bound])
        for surface, route in snapshot.surfaces.items():
            served: Sequence[tuple[str, PolicyFile]] = [("stable", route.binding(None).policy.file)]
            if route.canary is not None:
                served = [*served, ("canary", route.canary.binding.policy.file)]
            for arm, policy in served:
                series = self.series(surface, arm, policy)
                for rule, bound, value in series.measures.bands:
                    bands[bound].labels(surface, arm, policy.version, rule).set(value)


def _withdraw(gauge: Gauge, neutral: float) -> None:
    """Remove every series of a band gauge before the served bands are set again; in multiprocess mode (a value
    file cannot forget a series) set them to the neutral bound instead (`app.monitoring.multiproc.clear_gauge`
    sets 0, which is no neutral upper bound)."""
    if multiprocess_dir() is None:
        gauge.clear()
        return
    for values in list(gauge._metrics):
        gauge.labels(*values).set(neutral)
    with warnings.catch_warnings():  # "clearing labels has not been implemented": handled just above
        warnings.simplefilter("ignore", UserWarning)
        gauge.clear()
