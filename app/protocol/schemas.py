"""Request and response bodies of the HTTP API.

`ScoreRequest` validates the envelope; candidates are validated column-wise by the feature encoder
(a pydantic model per candidate costs ~10 ms per 1000 candidates, more than the model itself), so
`Candidate` documents their shape in the OpenAPI schema and `app.protocol.rows` enforces it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from app.artifacts.policy_ranking import MAX_FEEDBACK_CREATORS, MAX_NEGATIVE_COUNT, MAX_SEEN_IDS

__all__ = [
    "AnswerVersions",
    "Candidate",
    "CascadeReport",
    "ColumnarScoreRequest",
    "CutCandidate",
    "FilteredCandidate",
    "RankedCandidate",
    "ScoreContext",
    "ScoreEnvelope",
    "ScoreOptions",
    "ScoreRequest",
    "ScoreResponse",
    "ShadowReport",
    "Versions",
]

MAX_ID_LENGTH = 256


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Body):
    """One item to rank."""

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="unique within the request")
    features: dict[str, float | str | None] = Field(
        default_factory=dict, description="model features by name; numeric as numbers, categorical as strings"
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="business attributes the policy reads (margin, creator_id, ...)"
    )


class ScoreContext(_Body):
    """What is shared by all candidates of the request."""

    user_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    features: dict[str, float | str | None] = Field(
        default_factory=dict, description="features broadcast to every candidate that lacks them"
    )
    attributes: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="context attributes matched by policy overrides (e.g. user_segment)"
    )
    seen_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_SEEN_IDS,
        description="candidate ids the user saw recently; a policy with `ranking.history.previously_seen` drops them",
    )
    negative_feedback: dict[
        Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)],
        Annotated[int, Field(ge=0, le=MAX_NEGATIVE_COUNT)],
    ] = Field(
        default_factory=dict, max_length=MAX_FEEDBACK_CREATORS,
        description="recent negative feedback count per creator; `ranking.history.fatigue` decays their candidates",
    )


class ScoreOptions(_Body):
    debug: bool = Field(default=False, description="add raw predictions, utility terms and every filter decision")
    top_k: int | None = Field(default=None, ge=1, description="answer at most this many (policy top_k also applies)")
    return_filtered: bool = Field(default=False, description="list removed candidates with the rule that removed them")


class ScoreEnvelope(_Body):
    """What every `/v1/score` body carries besides its candidates (rows, columns or an Arrow table)."""

    request_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    surface: str = Field(min_length=1, max_length=64)
    policy_version: str | None = Field(default=None, description="pin a policy version (A/B tests)")
    context: ScoreContext = ScoreContext()
    options: ScoreOptions = ScoreOptions()


class ScoreRequest(ScoreEnvelope):
    """Body of `POST /v1/score`: one object per candidate."""

    candidates: Annotated[
        list[dict[str, Any]],
        WithJsonSchema({"type": "array", "minItems": 1, "items": Candidate.model_json_schema()}),
    ]


class ColumnarScoreRequest(ScoreEnvelope):
    """Body of `POST /v1/score`, column-oriented: `columns.id` and one equal-length list per feature
    and attribute name (null or absent = missing), candidates as positions."""

    columns: dict[str, list[Any]] = Field(
        description="name -> one value per candidate; `id` is required, features and attributes share names"
    )


class Versions(_Body):
    model: str
    model_version: str
    calibration_version: str
    policy_version: str


class AnswerVersions(Versions):
    """What answered a request: the triple, and the first stage when the policy has a `cascade`."""

    first_stage_model: str | None = Field(default=None, description="the policy's cascade: first-stage model")
    first_stage_model_version: str | None = None
    first_stage_calibration_version: str | None = None


class CutCandidate(_Body):
    id: str
    index: int = Field(description="position in the request's candidates")
    first_stage_score: float | None = Field(description="null when the first stage's score was not finite")


class CascadeReport(_Body):
    """Debug only: the policy's first stage scored every candidate and passed its `top_n` to the model."""

    first_stage_model: str
    first_stage_model_version: str
    first_stage_calibration_version: str
    top_n: int
    task: str | None = Field(description="the first-stage task scored; null: the policy's utility")
    scored: int
    passed: int
    cut: list[CutCandidate] = Field(description="empty when the request had no more than top_n candidates")


class UtilityTermOut(_Body):
    name: str
    task: str
    prediction: float
    weight: float
    normalized: float | None = Field(default=None, description="the term's input after `ranking.normalize`")
    attribute: str | None = None
    attribute_value: float | None = None
    contribution: float


class RankingDebug(_Body):
    """What the policy's `ranking` block did to one candidate (docs/policies.md, "Ranking")."""

    score: float = Field(description="the ranking score: the utility after fatigue and diversity decay")
    fatigue: float | None = Field(default=None, description="history.fatigue factor")
    decay: dict[str, float] | None = Field(default=None, description="diversity rule -> position decay factor")
    mmr_penalty: float | None = Field(default=None, description="(1 - lambda) x similarity to the ones above")
    promoted_by: str | None = Field(default=None, description="the minimum that promoted it into its head")


class SlateShortfall(_Body):
    rule: str
    wanted: int
    got: int
    within: int


class CandidateDebug(_Body):
    raw_predictions: dict[str, float]
    logits: dict[str, float]
    terms: list[UtilityTermOut]
    guardrails: dict[str, bool]
    propensity: float | None = Field(
        default=None, description="when the policy explores: probability of this candidate at this rank given the"
        " candidates ranked above it (docs/policies.md, exploration)")
    ranking: RankingDebug | None = None


class RankedCandidate(_Body):
    id: str
    rank: int
    utility: float
    predictions: dict[str, float] = Field(description="calibrated probability per task")
    debug: CandidateDebug | None = None


class FilteredCandidate(_Body):
    id: str
    index: int = Field(description="position in the request's candidates")
    stage: str = Field(description="`cascade`, `guardrail` or `slate`")
    rule: str = Field(description="name of the guardrail or slate rule that removed it")
    debug: CandidateDebug | None = None


class ShadowReport(_Body):
    """Debug only: the surface's shadow policy ranked the same request; the answer is unchanged."""

    policy_version: str
    topk_overlap: float | None = Field(default=None, description="share of answered ids the shadow answers too")
    mean_rank_shift: float | None = Field(default=None, description="mean |rank - shadow rank| of shared ids")
    missing: int | None = Field(default=None, description="answered ids the shadow does not answer")
    ranked_ids: list[str] | None = None
    error: str | None = Field(default=None, description="why the shadow could not rank this request")


class ScoreResponse(_Body):
    request_id: str
    surface: str
    versions: AnswerVersions
    candidates: list[RankedCandidate]
    filtered: list[FilteredCandidate] | None = None
    overrides: list[str] | None = Field(default=None, description="debug: policy overrides that matched")
    timings_ms: dict[str, float] | None = Field(default=None, description="debug: per-stage wall time")
    slate_shortfalls: list[SlateShortfall] | None = Field(
        default=None, description="debug: minimums (`ranking.minimums`) the request could not meet")
    shadow: ShadowReport | None = Field(default=None, description="debug: comparison with the shadow policy")
    cascade: CascadeReport | None = Field(default=None, description="debug: what the policy's first stage cut")
