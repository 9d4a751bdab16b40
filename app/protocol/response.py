"""The `/v1/score` answer of a `ScoreOutcome` as plain data in the shape of `ScoreResponse`, which every
output format encodes: JSON as is (`app.protocol.rows`), Arrow as columns plus metadata (`app.protocol.arrow`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.cascade import CASCADE_STAGE
from app.protocol.schemas import ScoreEnvelope
from app.serving.forms import term_inputs
from app.serving.ranking import ranking_debug
from app.serving.scorer import ScoreInput, ScoreOutcome

__all__ = ["response_without_rows", "score_response"]


def score_response(request: ScoreEnvelope, scored: ScoreInput, outcome: ScoreOutcome) -> dict[str, Any]:
    """Only the answered rows are converted to Python objects: O(top_k), not O(batch)."""
    binding = outcome.binding
    tasks = binding.bundle.manifest.task_names()
    options = request.options
    ids = scored.ids
    ranked = outcome.ranked
    probabilities = outcome.probabilities[ranked].tolist()
    utility = outcome.utility[ranked].tolist()
    debug = _Debug(outcome, tasks) if options.debug else None
    propensity = outcome.propensity.tolist() if debug is not None and outcome.propensity is not None else None
    candidates = []
    for rank, (index, u, p) in enumerate(zip(ranked.tolist(), utility, probabilities, strict=True), start=1):
        row: dict[str, Any] = {
            "id": ids[index], "rank": rank, "utility": u, "predictions": dict(zip(tasks, p, strict=True))
        }
        if debug is not None:
            row["debug"] = debug.row(index)
            if propensity is not None:  # the policy explores: P(this candidate here | the ones above it)
                row["debug"]["propensity"] = propensity[rank - 1]
        candidates.append(row)
    return {**_head(request, outcome), "candidates": candidates, **_tail(request, scored, outcome, debug)}


def response_without_rows(request: ScoreEnvelope, scored: ScoreInput, outcome: ScoreOutcome) -> dict[str, Any]:
    """`score_response` without `candidates`: what a columnar encoder puts beside the answered rows, which
    it takes from the outcome's arrays. Only for a request without `debug` (whose answer explains each
    row and each filtered candidate: `score_response`)."""
    return {**_head(request, outcome), **_tail(request, scored, outcome, None)}


def _head(request: ScoreEnvelope, outcome: ScoreOutcome) -> dict[str, Any]:
    versions = outcome.binding.answer_versions()  # the triple, and the first stage of a cascade
    return {"request_id": request.request_id, "surface": request.surface, "versions": versions}


def _tail(request: ScoreEnvelope, scored: ScoreInput, outcome: ScoreOutcome, debug: _Debug | None) -> dict[str, Any]:
    """What follows the rows: the filtered candidates (when asked for), overrides and timings (debug)."""
    body: dict[str, Any] = {}
    options, ids = request.options, scored.ids
    if options.return_filtered or options.debug:
        filtered = []
        for group in outcome.filtered:
            for index in group.indices.tolist():
                item: dict[str, Any] = {"id": ids[index], "index": index, "stage": group.stage, "rule": group.rule}
                if debug is not None and group.stage != CASCADE_STAGE:  # the cut were never scored by the model
                    item["debug"] = debug.row(index)
                filtered.append(item)
        body["filtered"] = filtered
    if debug is not None:
        body["overrides"] = list(outcome.effective.overrides)
        if outcome.cascade is not None:
            body["cascade"] = outcome.cascade.to_debug(ids)
        if outcome.ranking is not None:
            body["slate_shortfalls"] = [
                {"rule": s.rule, "wanted": s.wanted, "got": s.got, "within": s.within}
                for s in outcome.ranking.shortfalls
            ]
        body["timings_ms"] = {k: round(v * 1000.0, 4) for k, v in outcome.timings.items()}
    return body


class _Debug:
    """Per-candidate explanation: raw and calibrated predictions, utility terms, guardrail decisions."""

    def __init__(self, outcome: ScoreOutcome, tasks: list[str]) -> None:
        self.outcome = outcome
        self.tasks = tasks
        self.raw = outcome.raw_probabilities()
        policy = outcome.binding.policy
        self.terms = list(zip(policy.term_names, policy.term_task_names, policy.term_tasks.tolist(),
                              policy.term_attributes, strict=True))
        self.weights = outcome.effective.weights.tolist()
        self.guardrails = [g.name for g in policy.guardrails]
        ranking = policy.file.ranking
        # a normalised term's input after normalisation (`ranking.normalize`), term name -> [B]
        self.normalized: dict[str, npt.NDArray[np.float64]] = {}
        if ranking is not None and ranking.normalize:
            inputs = term_inputs(outcome.probabilities, outcome.attributes, policy, None)
            self.normalized = {name: inputs[:, k] for k, name in enumerate(policy.term_names)
                               if name in ranking.normalize}

    def row(self, index: int) -> dict[str, Any]:
        o = self.outcome
        p = o.probabilities[index].tolist()
        contributions = o.contributions[index].tolist()
        terms = []
        for (name, task, t, attribute), weight, contribution in zip(
            self.terms, self.weights, contributions, strict=True
        ):
            term: dict[str, Any] = {"name": name, "task": task, "prediction": p[t], "weight": weight,
                                    "contribution": contribution}
            if name in self.normalized:
                term["normalized"] = float(self.normalized[name][index])
            if attribute is not None:
                term["attribute"] = attribute
                value = float(o.attributes[attribute][index])
                term["attribute_value"] = None if value != value else value  # NaN: missing, counted as 0
            terms.append(term)
        row: dict[str, Any] = {
            "raw_predictions": dict(zip(self.tasks, self.raw[index].tolist(), strict=True)),
            "logits": dict(zip(self.tasks, np.asarray(o.logits[index], dtype=np.float64).tolist(), strict=True)),
            "terms": terms,
            "guardrails": dict(zip(self.guardrails, o.triggered[index].tolist(), strict=True)),
        }
        if o.ranking is not None:
            row["ranking"] = ranking_debug(o.ranking, index)
        return row
