"""What the peers (bench/peer_apps/torch_app.py, bench/peer_apps/bento_service.py) share: the demo bundle's composition
written the way a team would write it by hand, reading the same artifact files as fusionrank.

Per-candidate pydantic objects in, a Python loop to build the matrices, then numpy for the policy:
Platt calibration per task with the calibration file's segment corrections, the policy's utility
terms (value terms too), its guardrails (probability threshold, attribute equals), its slate rules
(max per value, max matching) and top_k. Overrides are not implemented (the benchmark's context
matches none). Never imported by the service.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, Field


class Candidate(BaseModel):
    id: str
    features: dict[str, float | str | None] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)


class Context(BaseModel):
    user_id: str | None = None
    features: dict[str, float | str | None] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)


class Ranked(BaseModel):
    id: str
    rank: int
    utility: float
    predictions: dict[str, float]


class Answer(BaseModel):
    request_id: str
    surface: str
    candidates: list[Ranked]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class Composition:
    """Encoding and post-processing of one bundle + calibration + policy (paths from the environment)."""

    def __init__(self) -> None:
        store = Path(os.environ["PEER_MODEL_STORE"])
        policies = Path(os.environ["PEER_POLICIES"])
        self.bundle = store / "demo_ranker" / "1"
        manifest = json.loads((self.bundle / "manifest.json").read_text())
        self.tasks = [t["name"] for t in manifest["tasks"]]
        self.numeric = [(f["name"], f["default"]) for f in manifest["features"]["numeric"]]
        self.categorical = [
            (f["name"], {v: i + 1 for i, v in enumerate(f["vocabulary"])}) for f in manifest["features"]["categorical"]
        ]
        calibration = json.loads((self.bundle / "calibration" / "1.json").read_text())
        columns = {name: j for j, (name, _) in enumerate(self.categorical)}
        self.platt = []
        for task in self.tasks:
            spec = calibration["tasks"][task]
            segments = []
            for seg in spec["segments"]:
                vocabulary = self.categorical[columns[seg["feature"]]][1]
                a = np.ones(len(vocabulary) + 1)
                b = np.zeros(len(vocabulary) + 1)
                for value, params in seg["values"].items():
                    a[vocabulary[value]], b[vocabulary[value]] = params["a"], params["b"]
                segments.append((columns[seg["feature"]], a, b))
            self.platt.append((spec["calibrator"]["a"], spec["calibrator"]["b"], segments))
        active = (policies / "home" / "active").read_text().strip()
        self.policy = yaml.safe_load((policies / "home" / f"{active}.yaml").read_text())

    def encode(self, candidates: list[Candidate], context: Context) -> tuple[np.ndarray, np.ndarray]:
        """-> numeric float32 [B, N], categorical int64 [B, C]."""
        numeric = np.zeros((len(candidates), len(self.numeric)), dtype=np.float32)
        categorical = np.zeros((len(candidates), len(self.categorical)), dtype=np.int64)
        for i, candidate in enumerate(candidates):
            for j, (name, default) in enumerate(self.numeric):
                value = candidate.features.get(name)
                if value is None:
                    value = context.features.get(name, default)
                if value is None:
                    raise ValueError(f"candidate {i}: {name} is required")
                numeric[i, j] = float(value)
            for j, (name, vocabulary) in enumerate(self.categorical):
                value = candidate.features.get(name)
                if value is None:
                    value = context.features.get(name)
                categorical[i, j] = vocabulary.get(value, 0) if isinstance(value, str) else 0
        return numeric, categorical

    def rank(
        self, logits: np.ndarray, categorical: np.ndarray, candidates: list[Candidate], top_k: int | None
    ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """-> (answered indices in order, utility [B], calibrated probabilities [B, T])."""
        z = np.asarray(logits, dtype=np.float64)
        p = np.empty_like(z)
        for t, (a, b, segments) in enumerate(self.platt):
            zt = a * z[:, t] + b
            for column, sa, sb in segments:
                codes = categorical[:, column]
                zt = sa[codes] * zt + sb[codes]
            p[:, t] = _sigmoid(zt)
        task = {name: t for t, name in enumerate(self.tasks)}
        policy = self.policy
        utility = np.zeros(len(candidates))
        for term in policy["utility"]:
            contribution = term["weight"] * p[:, task[term["task"]]]
            if term.get("attribute"):
                values = [c.attributes.get(term["attribute"]) for c in candidates]
                contribution = contribution * np.array([0.0 if v is None else float(v) for v in values])
            utility += contribution
        keep = np.ones(len(candidates), dtype=bool)
        for guard in policy["guardrails"]:
            if guard.get("task"):
                pt = p[:, task[guard["task"]]]
                if guard.get("above") is not None:
                    keep &= ~(pt > guard["above"])
                if guard.get("below") is not None:
                    keep &= ~(pt < guard["below"])
            else:
                wanted = guard["equals"]
                keep &= np.array([
                    not (c.attributes.get(guard["attribute"]) == wanted
                         and type(c.attributes.get(guard["attribute"])) is type(wanted))
                    for c in candidates
                ])
        order = sorted(np.flatnonzero(keep).tolist(), key=lambda i: -utility[i])  # stable: ties keep order
        slate = policy.get("slate", {})
        for rule in slate.get("max_per_value", []):
            seen: dict[Any, int] = {}
            survivors = []
            for i in order:
                value = candidates[i].attributes.get(rule["attribute"])
                if value is not None:
                    seen[value] = seen.get(value, 0) + 1
                    if seen[value] > rule["max"]:
                        continue
                survivors.append(i)
            order = survivors
        for rule in slate.get("max_matching", []):
            count = 0
            survivors = []
            for i in order:
                value = candidates[i].attributes.get(rule["attribute"])
                if value == rule["equals"] and type(value) is type(rule["equals"]):
                    count += 1
                    if count > rule["max"]:
                        continue
                survivors.append(i)
            order = survivors
        limits = [k for k in (top_k, slate.get("top_k")) if k is not None]
        return order[: min(limits)] if limits else order, utility, p

    def answer(
        self, request_id: str, surface: str, candidates: list[Candidate], order: list[int],
        utility: np.ndarray, p: np.ndarray,
    ) -> Answer:
        return Answer(
            request_id=request_id, surface=surface,
            candidates=[
                Ranked(id=candidates[i].id, rank=r, utility=float(utility[i]),
                       predictions=dict(zip(self.tasks, p[i].tolist(), strict=True)))
                for r, i in enumerate(order, start=1)
            ],
        )
