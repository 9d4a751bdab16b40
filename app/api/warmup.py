"""Warm a snapshot before it serves: run each surface's sample request through its active binding."""

from __future__ import annotations

import logging

import orjson

from app.api.decode import decode_score_request
from app.errors import FusionrankError
from app.serving.bundle import ServingSnapshot
from app.serving.scorer import score

__all__ = ["warm_up"]

log = logging.getLogger("fusionrank.warmup")


def warm_up(snapshot: ServingSnapshot, *, rounds: int = 3, max_candidates: int = 100_000) -> list[str]:
    """Score the bundle's `sample_request.json` a few times per active binding; returns problems."""
    problems = []
    for surface, route in snapshot.surfaces.items():
        binding = route.binding(None)
        sample = binding.bundle.sample_request
        if sample is None:
            continue
        body = orjson.dumps({**sample, "surface": surface, "policy_version": None})
        try:
            _, scored = decode_score_request(body, max_candidates=max_candidates)
            for _ in range(rounds):
                score(binding, scored)
        except FusionrankError as exc:
            problems.append(f"{binding.bundle.path}/sample_request.json on surface {surface!r}: {exc.message}")
    for problem in problems:
        log.warning("warm-up: %s", problem)
    return problems
