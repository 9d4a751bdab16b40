"""Two-stage scoring: a light first stage picks the `top_n` candidates the policy's model then scores.

`score_request` is what every caller of the scorer uses (answers, warm-up, dry runs): without a
`cascade` in the policy it is `score()`; with one, the first stage scores every candidate
(`FirstStage`: one task's calibrated prediction, or the policy's utility on the light model's
predictions), the `top_n` best go through `score()` unchanged, and the outcome is put back in the
request's positions. The candidates cut are `filtered` at stage `cascade` (rule `first_stage_top_n`)
with NaN predictions, and `outcome.cascade` keeps their first-stage scores for debug. A request with no
more than `top_n` candidates skips the first stage (nothing to cut).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from app.artifacts.cascade import CASCADE_RULE, CASCADE_STAGE
from app.errors import InvalidRequest, ValueAt
from app.serving.attributes import AttributeColumns, extract_attributes
from app.serving.bundle import PolicyBinding
from app.serving.columns import CandidateColumns, Candidates, Column, EncodedStrings, Unsent
from app.serving.features import EncodedFeatures
from app.serving.first_stage import CascadeTrace, FirstStage
from app.serving.scorer import Filtered, ScoreInput, ScoreOutcome, score
from app.serving.utility import compose_utility

__all__ = ["first_stage_scores", "score_request", "take_candidates"]

_T = TypeVar("_T", bound=np.generic)


def score_request(binding: PolicyBinding, request: ScoreInput, *, request_id: str | None = None) -> ScoreOutcome:
    """Score `request` on `binding`, through its first stage when the policy declares a cascade."""
    stage = binding.first_stage
    if stage is None:
        return score(binding, request, request_id=request_id)
    size = len(request.ids)
    if size <= stage.spec.top_n:
        outcome = score(binding, request, request_id=request_id)
        outcome.cascade = CascadeTrace(stage, None, np.arange(size, dtype=np.intp), np.empty(0, np.intp), 0.0)
        return outcome
    t0 = time.perf_counter()
    scores = first_stage_scores(stage, request)
    # Best top_n by first-stage score (NaN last); the main model sees them in request order.
    order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
    passed = np.sort(order[: stage.spec.top_n])
    cut = order[stage.spec.top_n:]
    seconds = time.perf_counter() - t0
    try:
        outcome = score(binding, take_candidates(request, passed), request_id=request_id)
    except InvalidRequest as exc:  # a bad value among the passed: name it at its position in the request
        raise _at_request_positions(exc, passed) from None
    expanded = _expand(outcome, passed, size)
    expanded.filtered.insert(0, Filtered(cut, CASCADE_STAGE, CASCADE_RULE))
    expanded.timings = {"first_stage": seconds, **outcome.timings}
    expanded.cascade = CascadeTrace(stage, scores, passed, cut, seconds)
    return expanded


def first_stage_scores(stage: FirstStage, request: ScoreInput) -> npt.NDArray[np.float64]:
    """float64 [B]: every candidate's first-stage score (NaN where the light model's output is not finite)."""
    bundle = stage.bundle
    encoded = bundle.encoder.encode(request.features, request.context_features)
    logits = bundle.runner.run(encoded.numeric, encoded.categorical)
    probabilities = stage.calibration.apply(logits, encoded.categorical)
    policy = stage.policy
    if policy is None:
        scores = probabilities[:, stage.task_index]
    else:
        attributes = extract_attributes(request.attributes, policy.file.attributes)
        effective = policy.resolve(request.context_attributes)
        _, scores = compose_utility(probabilities, attributes, policy, effective.weights)
    return np.where(np.isfinite(scores), scores, np.nan).astype(np.float64, copy=False)


def take_candidates(request: ScoreInput, positions: npt.NDArray[np.intp]) -> ScoreInput:
    """The request restricted to `positions` (rows or columns), in that order."""
    picks = positions.tolist()
    ids = [request.ids[i] for i in picks]
    features = _take(request.features, positions, picks)
    attributes = features if request.attributes is request.features else _take(request.attributes, positions, picks)
    return replace(request, ids=ids, features=features, attributes=attributes)


def _take(candidates: Candidates, positions: npt.NDArray[np.intp], picks: list[int]) -> Candidates:
    if not isinstance(candidates, CandidateColumns):
        return [candidates[i] for i in picks]
    columns: dict[str, Column] = {}
    for name, column in candidates.columns.items():
        if isinstance(column, EncodedStrings):
            columns[name] = EncodedStrings(column.codes[positions], column.distinct)
        elif isinstance(column, np.ndarray):
            columns[name] = column[positions]
        elif isinstance(column, Unsent):  # stays recognisable as "no candidate sent it"
            columns[name] = Unsent([None] * len(picks))
        else:
            columns[name] = [column[i] for i in picks]
    return CandidateColumns(len(picks), columns)


def _expand(outcome: ScoreOutcome, passed: npt.NDArray[np.intp], size: int) -> ScoreOutcome:
    """The outcome of the `passed` candidates laid out over all `size` of the request's positions."""

    def spread(values: npt.NDArray[_T], fill: float | bool) -> npt.NDArray[_T]:
        out = np.full((size, *values.shape[1:]), fill, dtype=values.dtype)
        out[passed] = values
        return out

    attributes: AttributeColumns = {}
    for name, column in outcome.attributes.items():
        if isinstance(column, np.ndarray):
            attributes[name] = spread(column, np.nan)
        else:
            full: list[object] = [None] * size
            for i, value in zip(passed.tolist(), column, strict=True):
                full[i] = value
            attributes[name] = full
    ranking = outcome.ranking
    if ranking is not None:  # per-candidate steps of the policy's `ranking` block, at request positions
        ranking = replace(
            ranking, score=spread(ranking.score, np.nan),
            fatigue=None if ranking.fatigue is None else spread(ranking.fatigue, np.nan),
            decay={name: spread(factor, np.nan) for name, factor in ranking.decay.items()},
            mmr_penalty=None if ranking.mmr_penalty is None else spread(ranking.mmr_penalty, np.nan),
            promoted={int(passed[i]): rule for i, rule in ranking.promoted.items()},
        )
    encoded = None
    if outcome.encoded is not None:
        encoded = EncodedFeatures(spread(outcome.encoded.numeric, np.nan), spread(outcome.encoded.categorical, 0))
    return replace(
        outcome,
        logits=spread(outcome.logits, np.nan), probabilities=spread(outcome.probabilities, np.nan),
        contributions=spread(outcome.contributions, np.nan), utility=spread(outcome.utility, np.nan),
        triggered=spread(outcome.triggered, False), attributes=attributes,
        ranked=passed[outcome.ranked],
        filtered=[Filtered(passed[group.indices], group.stage, group.rule) for group in outcome.filtered],
        encoded=encoded, ranking=ranking,
    )


def _at_request_positions(error: InvalidRequest, passed: npt.NDArray[np.intp]) -> InvalidRequest:
    """`error` from scoring the passed candidates, with each candidate position mapped back to the request's."""
    message, details = error.message, []
    for detail in error.details:
        at, index = detail.value, detail.candidate_index
        if at is not None:
            moved = ValueAt(at.section, at.name, int(passed[at.index]))
            if detail.field is not None:
                message = message.replace(detail.field, str(moved))
            detail = replace(detail, value=moved, field=str(moved) if detail.field == str(at) else detail.field)
        if index is not None:
            detail = replace(detail, candidate_index=int(passed[index]))
        details.append(detail)
    return type(error)(message, details=details)
