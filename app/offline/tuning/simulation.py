"""`fusionrank simulate`: replay policy files (or a grid of weights) on logs and compare them.

A variant is a policy file, or the first policy with some utility-term weights replaced (a grid
point). Every variant is replayed with the service's composition code (`replay.py`) and measured
(`outcomes.py`); the Pareto front is taken on two metrics (x lower-is-better, y higher-is-better).
`emit_draft` writes a chosen variant as a new policy version with an empty `approved_by`: a draft
the service refuses until a reviewer approves it.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from app.artifacts.policy import PolicyFile
from app.errors import PolicyError
from app.offline.ope.evaluate import OpeSettings, evaluate_policy
from app.offline.ope.model_replay import compare_predictions, compare_rankings, rescored_log
from app.offline.ope.slates import logged_slates
from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.outcomes import replay_outcomes, segment_outcomes
from app.offline.tuning.replay import replay_policy

__all__ = [
    "LocalReplayer",
    "LogReplayer",
    "PolicyVariant",
    "SimulationResult",
    "emit_draft",
    "grid_variants",
    "model_replay",
    "off_policy_estimates",
    "pareto_front",
    "simulate",
    "tuned_variant",
]


@dataclass(frozen=True)
class PolicyVariant:
    label: str
    policy: PolicyFile
    source: str  # the policy file, or "<file> with term=weight, ..."
    changes: dict[str, float] = field(default_factory=dict)


@dataclass
class SimulationResult:
    k: int
    variants: list[PolicyVariant]
    metrics: dict[str, dict[str, float]]  # label -> metric -> value
    segments: dict[str, dict[str, dict[str, dict[str, float]]]]  # segment column -> label -> value -> metrics


def grid_variants(base: PolicyVariant, grid: Mapping[str, Sequence[float]]) -> list[PolicyVariant]:
    """One variant per combination of term weights (term name -> candidate weights)."""
    terms = {t.name for t in base.policy.utility}
    for name in grid:
        if name not in terms:
            raise PolicyError(base.source, f"utility.{name}", "no utility term of that name to vary in --grid",
                              f"use one of {sorted(terms)}")
    names = list(grid)
    out = []
    for i, combo in enumerate(itertools.product(*(grid[n] for n in names))):
        changes = dict(zip(names, map(float, combo), strict=True))
        out.append(with_weights(base, changes, f"grid{i + 1}"))
    return out


def tuned_variant(
    base: PolicyVariant,
    signed: Mapping[str, float],
    label: str,
    source: str,
    *,
    form: tuple[str, float | None] = ("sum", None),
) -> PolicyVariant:
    """The base policy with tuned weights (task -> signed weight, from weights.json) on its plain
    terms (weight x p_task, no attribute). The tuned weights sum to 1 in absolute value; they are
    rescaled so the replaced terms keep their total absolute weight, which leaves value terms and
    untuned terms their say. Every tuned task needs exactly one plain term.

    form: (form, epsilon) the weights were tuned for (weights.json `form`, `epsilon`). Weights tuned for a weighted
    sum mean something else as exponents and the other way round, and a normalised term's weight was tuned on raw
    predictions: those are refused (tune with --product-epsilon, or vary the terms with --grid)."""
    ranking = base.policy.ranking
    product = ranking is not None and ranking.form == "product"
    tuned_form, tuned_epsilon = form
    if product != (tuned_form == "product"):
        what = "a weighted sum" if tuned_form != "product" else "a product form (exponents)"
        raise PolicyError(base.source, "ranking.form", f"{source} holds weights tuned for {what}; this policy's"
                          f" utility is {'a product' if product else 'a weighted sum'}",
                          "tune with `--product-epsilon EPSILON` for a product-form policy (and without it for a"
                          " sum), or vary the terms with --grid")
    if product and ranking is not None and tuned_epsilon != ranking.epsilon:
        raise PolicyError(base.source, "ranking.epsilon", f"{source} was tuned with epsilon {tuned_epsilon}, the"
                          f" policy uses {ranking.epsilon}", "tune with the policy's epsilon (--product-epsilon)")
    plain: dict[str, list[str]] = {}
    for term in base.policy.utility:
        if term.attribute is None:
            plain.setdefault(term.task, []).append(term.name)
    for task in signed:
        if len(plain.get(task, [])) != 1:
            raise PolicyError(base.source, "utility", f"task {task!r} of {source} has {len(plain.get(task, []))}"
                              " plain terms (weight x p_task) in the policy, not one",
                              "give the policy exactly one plain term per tuned task, or vary it with --grid")
    current = {t.name: t.weight for t in base.policy.utility}
    names = {task: plain[task][0] for task in signed}
    normalised = sorted(n for n in names.values() if ranking is not None and n in ranking.normalize)
    if normalised:
        raise PolicyError(base.source, f"ranking.normalize.{normalised[0]}", f"{source} tunes term"
                          f" {normalised[0]!r} on raw predictions; the policy normalises its input per request",
                          "vary that term with --grid, or drop it from ranking.normalize")
    total_before = sum(abs(current[names[t]]) for t in signed)
    total_tuned = sum(abs(w) for w in signed.values())
    scale = total_before / total_tuned if total_tuned > 0 and total_before > 0 else 1.0
    variant = with_weights(base, {names[t]: w * scale for t, w in signed.items()}, label)
    changes = variant.source.split(" with ", 1)[1]
    return PolicyVariant(label, variant.policy, f"{base.source} with weights from {source} ({changes})",
                         variant.changes)


def with_weights(base: PolicyVariant, changes: Mapping[str, float], label: str) -> PolicyVariant:
    data = base.policy.to_yaml_dict()
    for term in data["utility"]:
        if term["name"] in changes:
            term["weight"] = float(changes[term["name"]])
    policy = PolicyFile.model_validate(data)
    text = ", ".join(f"{k}={v:g}" for k, v in changes.items())
    return PolicyVariant(label, policy, f"{base.source} with {text}", dict(changes))


def simulate(
    log: CandidateLog,
    variants: Sequence[PolicyVariant],
    *,
    k: int = 10,
    top_k: int | None = None,
    context: Mapping[str, str] | None = None,
    mix: Sequence[str] = (),
    segments: Sequence[str] = (),
    segment_metrics: Sequence[str] = (),
    show_progress: bool = False,
) -> SimulationResult:
    metrics: dict[str, dict[str, float]] = {}
    by_segment: dict[str, dict[str, dict[str, dict[str, float]]]] = {s: {} for s in segments}
    for variant in variants:
        replay = replay_policy(log, variant.policy, variant.source, label=variant.label, context=context,
                               top_k=top_k, show_progress=show_progress)
        metrics[variant.label] = replay_outcomes(log, replay, k, mix=mix)
        for column in segments:
            by_segment[column][variant.label] = segment_outcomes(log, replay, k, column, segment_metrics)
    return SimulationResult(k, list(variants), metrics, by_segment)


def off_policy_estimates(
    log: CandidateLog,
    variants: Sequence[PolicyVariant],
    settings: OpeSettings,
    *,
    top_k: int | None = None,
    context: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """`simulate --ope`: each variant's value at top k estimated from the logged propensities
    (`app.offline.ope`), label -> `evaluate_policy` report."""
    out = {}
    for variant in variants:
        replay = replay_policy(log, variant.policy, variant.source, label=variant.label, context=context, top_k=top_k)
        out[variant.label] = evaluate_policy(log, replay, settings)
    return out


def model_replay(
    log: CandidateLog,
    variants: Sequence[PolicyVariant],
    bundle: Path,
    *,
    k: int,
    calibration: str | None = None,
    ope: OpeSettings | None = None,
    top_k: int | None = None,
    context: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`simulate --model BUNDLE`: the bundle rescores the logged features; every variant is replayed on its
    predictions and compared with what was served (slates; with `ope`, the off-policy value of serving the
    variant with that model). The direct method of DR stays the logged model's predictions."""
    rescored = rescored_log(log, bundle, calibration)
    served = logged_slates(log, k)
    rankings: dict[str, dict[str, float]] = {}
    estimates: dict[str, dict[str, Any]] = {}
    for variant in variants:
        replay = replay_policy(rescored.log, variant.policy, variant.source, label=variant.label, context=context,
                               top_k=top_k)
        rankings[variant.label] = compare_rankings(served, replay.served, k)
        if ope is not None:
            estimates[variant.label] = evaluate_policy(log, replay, ope)
    out: dict[str, Any] = {"model": rescored.label, "k": k, "predictions": compare_predictions(log, rescored.log),
                           "rankings": rankings}
    if ope is not None:
        out["ope"] = estimates
    return out


class LogReplayer(Protocol):
    """A log that `run_simulate` can replay, whichever engine holds it (this machine or Spark)."""

    @property
    def columns(self) -> Sequence[str]: ...

    @property
    def tasks(self) -> tuple[str, ...]: ...

    def simulate(
        self, variants: Sequence[PolicyVariant], *, k: int, top_k: int | None, context: Mapping[str, str],
        mix: Sequence[str], segments: Sequence[str], segment_metrics: Sequence[str], show_progress: bool,
    ) -> SimulationResult: ...


@dataclass(frozen=True)
class LocalReplayer:
    """The local engine: the whole log in memory, `simulate` on it."""

    log: CandidateLog

    @property
    def columns(self) -> Sequence[str]:
        return list(self.log.columns)

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.log.tasks

    def simulate(
        self, variants: Sequence[PolicyVariant], *, k: int, top_k: int | None, context: Mapping[str, str],
        mix: Sequence[str], segments: Sequence[str], segment_metrics: Sequence[str], show_progress: bool,
    ) -> SimulationResult:
        return simulate(self.log, variants, k=k, top_k=top_k, context=context, mix=mix, segments=segments,
                        segment_metrics=segment_metrics, show_progress=show_progress)


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Labels not dominated: no other point has x <= and y >= with one strict. Sorted by x."""
    front = []
    for label, (x, y) in points.items():
        dominated = any(
            (ox <= x and oy >= y) and (ox < x or oy > y) for other, (ox, oy) in points.items() if other != label
        )
        if not dominated and np.isfinite(x) and np.isfinite(y):
            front.append(label)
    return sorted(front, key=lambda name: points[name][0])


def emit_draft(
    variant: PolicyVariant, out_dir: Path, *, version: str | None = None, taken: Collection[str] = (), note: str = ""
) -> Path:
    """Write `variant` as a draft policy `out_dir/<surface>/<version>.yaml` (approved_by empty); the
    default version is one past the highest integer among the base's version and `taken` (versions
    of the surface already in use), so copying the draft beside them never overwrites one."""
    base = variant.policy
    new_version = version or _next_version(base.version, taken)
    data = base.to_yaml_dict()
    data["version"] = new_version
    data["governance"] = {
        "owner": base.governance.owner,
        "approved_by": [],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "change_note": (f"DRAFT from `fusionrank simulate` ({variant.label}: {variant.source}); based on version"
                        f" {base.version}. {note}".strip() + " Needs a reviewer in approved_by before activation."),
    }
    policy = PolicyFile.model_validate(data)  # the draft obeys the policy grammar
    path = out_dir / policy.surface / f"{policy.version}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(policy.to_yaml_dict(), sort_keys=False), encoding="utf-8")
    return path


def _next_version(version: str, taken: Collection[str] = ()) -> str:
    numbers = [int(v) for v in (version, *taken) if v.isdigit()]
    if not numbers:
        return f"{version}-draft"
    return str(max(numbers) + 1)
