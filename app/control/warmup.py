"""The golden batch — each bundle's `sample_request.json` — run through policies before they serve.

`GoldenBatch.warm_up` runs it through each surface's active binding at start-up (problems are
reported, the process still starts); `dry_run` runs it through a policy about to be activated and
raises, so that a policy that cannot score the golden batch never replaces one that can; `validate`
is everything an activation checks.

The golden batch is a `/v1/score` body, so reading it is the wire protocol's job: the control plane
is handed the decoder (`GoldenDecoder`) by whoever builds it (the app, the CLI) and never imports
the protocol or the HTTP layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson

from app.control.loader import BundleCache
from app.errors import FusionrankError, PolicyError
from app.serving.bundle import BundlePin, PolicyBinding, ServingSnapshot
from app.serving.cascade import first_stage_scores, score_request
from app.serving.scorer import ScoreInput

__all__ = ["SAMPLE_REQUEST", "DryRun", "GoldenBatch", "GoldenDecoder"]

log = logging.getLogger("fusionrank.warmup")

SAMPLE_REQUEST = "sample_request.json"

# A `/v1/score` JSON body -> what the scorer takes (raises a FusionrankError when the body is invalid).
GoldenDecoder = Callable[[bytes], ScoreInput]


class DryRun:
    """What a dry run saw: candidates in the golden batch, answered and filtered per context."""

    def __init__(self, candidates: int) -> None:
        self.candidates = candidates
        self.answered: dict[str, int] = {}  # context label -> answered candidates

    def to_dict(self) -> dict[str, object]:
        return {"golden_candidates": self.candidates, "answered": dict(self.answered)}


class GoldenBatch:
    """Golden-batch checks of bindings, with the `/v1/score` decoder they need."""

    def __init__(self, decode: GoldenDecoder) -> None:
        self._decode = decode

    def warm_up(self, snapshot: ServingSnapshot, *, rounds: int = 3) -> list[str]:
        """Score the bundle's `sample_request.json` a few times per active binding; returns problems."""
        problems = []
        for surface, route in snapshot.surfaces.items():
            binding = route.binding(None)
            sample = binding.bundle.sample_request
            if sample is None:
                continue
            try:
                scored = self._decode(orjson.dumps({**sample, "surface": surface, "policy_version": None}))
                for _ in range(rounds):
                    score_request(binding, scored)
                    if binding.first_stage is not None:  # run even when the batch is smaller than top_n
                        first_stage_scores(binding.first_stage, scored)
            except FusionrankError as exc:
                problems.append(f"{binding.bundle.path}/{SAMPLE_REQUEST} on surface {surface!r}: {exc.message}")
        for problem in problems:
            log.warning("warm-up: %s", problem)
        return problems

    def dry_run(self, binding: PolicyBinding, surface: str, policy_path: Path) -> DryRun:
        """Score the golden batch under `binding`: with the sample's context, then with each override's.

        Raises `PolicyError` (naming `policy_path`) when the batch cannot be scored, a utility is not
        finite, or the policy answers no candidate at all (every candidate filtered is a broken policy).
        """
        sample_path = binding.bundle.path / SAMPLE_REQUEST
        sample = binding.bundle.sample_request
        if sample is None:
            raise PolicyError(
                policy_path, "model", f"the bundle has no golden batch ({sample_path}) to dry-run the policy on",
                "ship a /v1/score body as sample_request.json in the model bundle",
            )
        try:
            scored = self._decode(orjson.dumps({**sample, "surface": surface, "policy_version": None}))
        except (FusionrankError, orjson.JSONEncodeError) as exc:
            why = exc.message if isinstance(exc, FusionrankError) else str(exc)
            raise PolicyError(sample_path, "", f"the golden batch is not a valid request: {why}",
                              "rewrite sample_request.json as a /v1/score body") from None
        contexts: list[tuple[str, ScoreInput]] = [("sample context", scored)]
        for override in binding.policy.file.overrides:
            context = {**scored.context_attributes, **override.when}
            contexts.append((f"override {override.name}", replace(scored, context_attributes=context)))
        report = DryRun(len(scored.ids))
        for label, request in contexts:
            try:
                outcome = score_request(binding, request)
                first = None if binding.first_stage is None else first_stage_scores(binding.first_stage, request)
            except FusionrankError as exc:
                at = exc.details[0].field or "" if exc.details else ""
                where = f" at {at}" if at else ""
                # candidates[3].attributes.margin -> the declaration to fix is `attributes.margin`
                field = "attributes." + at.split(".attributes.", 1)[1] if ".attributes." in at else "attributes"
                raise PolicyError(
                    policy_path, field,
                    f"dry run on the golden batch ({sample_path}, {label}) failed{where}: {exc.message}",
                    "declare each attribute with the JSON type the ranking backend sends (see the golden batch)",
                ) from None
            if first is not None and not np.isfinite(first).any():
                raise PolicyError(
                    policy_path, "cascade.model",
                    f"dry run ({label}): the first stage scores no golden candidate with a finite number",
                    "check the first-stage model and calibration (cascade.model, cascade.calibration_version)",
                )
            scored_utility = outcome.utility if outcome.cascade is None else outcome.utility[outcome.cascade.passed]
            if not np.isfinite(scored_utility).all():
                raise PolicyError(
                    policy_path, "utility", f"dry run ({label}): a utility is not finite",
                    "keep weights and value attributes finite",
                )
            if outcome.ranked.size == 0:
                rules = sorted({group.rule for group in outcome.filtered})
                raise PolicyError(
                    policy_path, "guardrails",
                    f"dry run ({label}): every one of the {len(scored.ids)} golden candidates was filtered"
                    f" (by {rules})",
                    "check the guardrail thresholds and slate rules; a policy must answer the golden batch",
                )
            report.answered[label] = int(outcome.ranked.size)
        return report

    def validate(
        self, policy_path: Path, cache: BundleCache, *, surface: str | None = None, pin: BundlePin | None = None
    ) -> tuple[PolicyBinding, DryRun]:
        """Everything an activation checks: schema, model and calibration cross-checks (against `pin`'s model
        and calibration when given), the bundle's golden logits (checked when a bundle is first loaded),
        and the golden-batch dry run, which is also the warm-up of a newly loaded session."""
        binding = cache.bind(policy_path, pin)
        report = self.dry_run(binding, surface or binding.policy.file.surface, policy_path)
        return binding, report
