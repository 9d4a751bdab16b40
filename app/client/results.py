"""Typed answers: a ranking (`ScoreResult`) read from a JSON or an Arrow answer, and a surface's description.

Plain frozen dataclasses: no pydantic, no numpy. `ScoreResult.from_json` reads the JSON answer of
`POST /v1/score`; `ScoreResult.from_arrow` reads the Arrow one (candidates as columns, the rest as
JSON in the schema metadata key `fusionrank.response`) into the same objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "Arm",
    "CandidateDebug",
    "Feature",
    "FilteredCandidate",
    "RankedCandidate",
    "ScoreResult",
    "Surface",
    "UtilityTerm",
    "Versions",
]

_RESPONSE_KEY = b"fusionrank.response"
_ARROW_FIXED = ("id", "rank", "utility")


@dataclass(frozen=True, slots=True)
class Versions:
    """The triple that answered: model name and version, calibration version, policy version."""

    model: str
    model_version: str
    calibration_version: str
    policy_version: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Versions:
        return cls(str(data["model"]), str(data["model_version"]), str(data["calibration_version"]),
                   str(data["policy_version"]))


@dataclass(frozen=True, slots=True)
class UtilityTerm:
    """One term of a candidate's utility: prediction × weight (× attribute value) = contribution."""

    name: str
    task: str
    prediction: float
    weight: float
    contribution: float
    attribute: str | None = None
    attribute_value: float | None = None


@dataclass(frozen=True, slots=True)
class CandidateDebug:
    """With `debug=True`: raw (uncalibrated) predictions, logits, the utility terms, guardrail decisions."""

    raw_predictions: Mapping[str, float]
    logits: Mapping[str, float]
    terms: tuple[UtilityTerm, ...]
    guardrails: Mapping[str, bool]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CandidateDebug | None:
        if data is None:
            return None
        terms = tuple(
            UtilityTerm(t["name"], t["task"], t["prediction"], t["weight"], t["contribution"], t.get("attribute"),
                        t.get("attribute_value"))
            for t in data["terms"]
        )
        return cls(_frozen(data["raw_predictions"]), _frozen(data["logits"]), terms, _frozen(data["guardrails"]))


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """An answered candidate: its rank (1 = first), utility and calibrated probability per task."""

    id: str
    rank: int
    utility: float
    predictions: Mapping[str, float]
    debug: CandidateDebug | None = None


@dataclass(frozen=True, slots=True)
class FilteredCandidate:
    """A candidate removed by a rule: `stage` is `guardrail` or `slate`; `index` its place in the request."""

    id: str
    index: int
    stage: str
    rule: str
    debug: CandidateDebug | None = None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """The answer of `POST /v1/score`. `arm` is `canary` for a request the surface's canary answered,
    else `stable`; `filtered` is None unless `return_filtered` or `debug` was asked for."""

    request_id: str
    surface: str
    versions: Versions
    arm: str
    candidates: tuple[RankedCandidate, ...]
    filtered: tuple[FilteredCandidate, ...] | None = None
    overrides: tuple[str, ...] | None = None
    timings_ms: Mapping[str, float] | None = None
    shadow: Mapping[str, Any] | None = None

    @property
    def ids(self) -> list[str]:
        """The answered ids in rank order."""
        return [c.id for c in self.candidates]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ScoreResult:
        candidates = tuple(
            RankedCandidate(c["id"], c["rank"], c["utility"], _frozen(c["predictions"]),
                            CandidateDebug.from_dict(c.get("debug")))
            for c in body["candidates"]
        )
        return cls._with_rest(body, candidates)

    @classmethod
    def from_arrow(cls, body: bytes) -> ScoreResult:
        """An Arrow IPC answer (`Accept: application/vnd.apache.arrow.stream`); needs pyarrow."""
        import pyarrow as pa  # optional: only Arrow answers need it

        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        rest = json.loads((table.schema.metadata or {})[_RESPONSE_KEY])
        columns = table.to_pydict()
        tasks = [name for name in table.column_names if name not in _ARROW_FIXED]
        debug = rest.pop("debug", None) or [None] * table.num_rows
        candidates = tuple(
            RankedCandidate(columns["id"][i], columns["rank"][i], columns["utility"][i],
                            _frozen({task: columns[task][i] for task in tasks}), CandidateDebug.from_dict(debug[i]))
            for i in range(table.num_rows)
        )
        return cls._with_rest(rest, candidates)

    @classmethod
    def _with_rest(cls, body: Mapping[str, Any], candidates: tuple[RankedCandidate, ...]) -> ScoreResult:
        filtered = body.get("filtered")
        overrides = body.get("overrides")
        timings = body.get("timings_ms")
        return cls(
            request_id=body["request_id"],
            surface=body["surface"],
            versions=Versions.from_dict(body["versions"]),
            arm=body.get("arm", "stable"),  # the server names the arm only while the surface has a canary
            candidates=candidates,
            filtered=None if filtered is None else tuple(
                FilteredCandidate(f["id"], f["index"], f["stage"], f["rule"], CandidateDebug.from_dict(f.get("debug")))
                for f in filtered
            ),
            overrides=None if overrides is None else tuple(overrides),
            timings_ms=None if timings is None else _frozen(timings),
            shadow=body.get("shadow"),
        )


@dataclass(frozen=True, slots=True)
class Arm:
    """A triple answering `share` of the surface's unpinned requests (a canary is sticky by `key`)."""

    arm: str
    share: float
    versions: Versions
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Feature:
    """A model input: `number` (with the default filling a missing value) or `string` (a category)."""

    name: str
    type: str
    required: bool
    default: float | None = None
    vocabulary_size: int | None = None


@dataclass(frozen=True, slots=True)
class Surface:
    """`GET /v1/surfaces/{surface}`: what a request to the surface carries and which triples answer it.
    `document` is the whole answer (limits, rollout state...) as sent."""

    surface: str
    policy_version: str
    arms: tuple[Arm, ...]
    tasks: tuple[str, ...]
    features: tuple[Feature, ...]
    attributes: Mapping[str, str]  # candidate attribute name -> number | string | boolean
    document: Mapping[str, Any]

    @property
    def required_features(self) -> list[str]:
        return [f.name for f in self.features if f.required]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Surface:
        features = tuple(
            Feature(f["name"], f["type"], required, f.get("default"), f.get("vocabulary_size"))
            for required, group in ((True, doc["features"]["required"]), (False, doc["features"]["optional"]))
            for f in group
        )
        return cls(
            surface=doc["surface"],
            policy_version=doc["policy_version"],
            arms=tuple(Arm(a["arm"], a["share"], Versions.from_dict(a["versions"]), a.get("key")) for a in doc["arms"]),
            tasks=tuple(t["name"] for t in doc["tasks"]),
            features=features,
            attributes=_frozen({a["name"]: a["type"] for a in doc["attributes"]}),
            document=doc,
        )


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))
