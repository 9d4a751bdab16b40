"""What a client needs to call a surface, read from the served snapshot: `GET /v1/surfaces[/{surface}]`.

A surface's description says which triples answer (the stable arm and, during a canary, the canary
arm with its share and sticky key), the tasks predicted, the features a request carries (required or
with the default that fills them; categorical ones with the size of their vocabulary, never the
vocabulary itself), the candidate and context attributes the policy reads, and the request limits.

Features, tasks and attributes are the union over the arms: a request may be answered by either arm,
so it carries what any of them needs (a feature is required when one arm's model has no default for it).
Everything here is a pure function of the snapshot (plus the limits and the rollout state handed in),
so the HTTP layer computes it once per installed snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.artifacts.policy import AttributeType
from app.protocol.schemas import Versions
from app.serving.bundle import PolicyBinding, ServingSnapshot, SurfaceRoute

__all__ = [
    "Arm",
    "AttributeSpec",
    "ContextAttributeSpec",
    "FeatureSpec",
    "Features",
    "RequestLimits",
    "SurfaceDescription",
    "SurfaceList",
    "TaskSpecOut",
    "describe_surface",
    "describe_surfaces",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(_Out):
    """A triple that answers a share of the surface's unpinned requests."""

    arm: Literal["stable", "canary"]
    share: float = Field(description="share of unpinned requests this arm answers (1.0 without a canary)")
    key: str | None = Field(default=None, description="canary only: the request field hashed to pick the arm")
    versions: Versions


class TaskSpecOut(_Out):
    name: str
    polarity: Literal["positive", "negative"] = Field(description="negative tasks (hide, report) are penalised")
    description: str = ""


class FeatureSpec(_Out):
    """One model input; a request sends it per candidate or once in `context.features`."""

    name: str
    type: Literal["number", "string"] = Field(description="number: JSON number; string: a category")
    default: float | None = Field(default=None, description="number: the value used when it is missing")
    vocabulary_size: int | None = Field(
        default=None, description="string: known categories; an unknown or missing one scores as out-of-vocabulary"
    )


class Features(_Out):
    required: list[FeatureSpec] = Field(description="numeric features without a default: a missing one is a 422")
    optional: list[FeatureSpec] = Field(description="filled by the default (numbers) or out-of-vocabulary (strings)")


class AttributeSpec(_Out):
    """A candidate attribute the policy reads (type-checked; missing counts as absent, 0 in a value term)."""

    name: str
    type: AttributeType
    used_by: list[str] = Field(description="the utility terms, guardrails and slate rules that read it")


class ContextAttributeSpec(_Out):
    """A `context.attributes` key a policy override matches on."""

    name: str
    used_by: list[str] = Field(description="the overrides that match on it")


class RequestLimits(_Out):
    max_candidates: int
    max_body_bytes: int
    max_decoded_bytes: int = Field(description="Arrow: decompressed and converted bytes of the batches")
    max_columns: int = Field(description="columns of a column-JSON or Arrow body")
    max_id_length: int
    content_types: list[str] = Field(description="accepted `Content-Type` of `POST /v1/score`")
    accept: list[str] = Field(description="answer formats by `Accept`")
    deadline_header: str = Field(description="the caller's remaining budget, whole milliseconds (1..3600000)")
    deadline_seconds: float = Field(description="the server's own deadline per request (0: none)")


class SurfaceDescription(_Out):
    surface: str
    policy_version: str = Field(description="the active policy version (the stable arm's)")
    servable_policy_versions: list[str] = Field(description="versions a request may pin with `policy_version`")
    arms: list[Arm]
    top_k: int | None = Field(description="the stable policy's slate size (None: every candidate that passes)")
    tasks: list[TaskSpecOut]
    features: Features
    attributes: list[AttributeSpec]
    context_attributes: list[ContextAttributeSpec]
    limits: RequestLimits
    rollout: dict[str, Any] = Field(
        default_factory=dict, description="the control plane's declared state (active, shadow, canary, ...)"
    )


class SurfaceList(_Out):
    service_version: str
    surfaces: list[SurfaceDescription]
    unserved: list[str] = Field(description="surfaces with files but nothing servable (see /readyz)")


def describe_surfaces(
    snapshot: ServingSnapshot, limits: RequestLimits, rollout: Mapping[str, Mapping[str, Any]], service_version: str
) -> SurfaceList:
    """Every served surface, in name order."""
    return SurfaceList(
        service_version=service_version,
        surfaces=[
            describe_surface(route, limits, rollout.get(name, {})) for name, route in sorted(snapshot.surfaces.items())
        ],
        unserved=sorted(set(snapshot.unserved) - set(snapshot.surfaces)),
    )


def describe_surface(route: SurfaceRoute, limits: RequestLimits, rollout: Mapping[str, Any]) -> SurfaceDescription:
    """One surface: its arms, and the union of what their models and policies read."""
    stable = route.binding(None)
    arms = [Arm(arm="stable", share=1.0, versions=Versions(**stable.versions()))]
    bindings = [stable]
    if route.canary is not None:
        canary = route.canary
        arms = [
            Arm(arm="stable", share=round(1.0 - canary.fraction, 12), versions=Versions(**stable.versions())),
            Arm(arm="canary", share=canary.fraction, key=canary.key, versions=Versions(**canary.binding.versions())),
        ]
        bindings.append(canary.binding)
    return SurfaceDescription(
        surface=route.surface,
        policy_version=route.active,
        servable_policy_versions=sorted(route.versions),
        arms=arms,
        top_k=stable.policy.file.slate.top_k,
        tasks=_tasks(bindings),
        features=_features(bindings),
        attributes=_attributes(bindings),
        context_attributes=_context_attributes(bindings),
        limits=limits,
        rollout=dict(rollout),
    )


def _tasks(bindings: list[PolicyBinding]) -> list[TaskSpecOut]:
    seen: dict[str, TaskSpecOut] = {}
    for binding in bindings:
        for task in binding.bundle.manifest.tasks:
            seen.setdefault(task.name, TaskSpecOut(name=task.name, polarity=task.polarity,
                                                   description=task.description))
    return list(seen.values())


def _features(bindings: list[PolicyBinding]) -> Features:
    """Numeric features in manifest order, then categorical ones; required when any arm lacks a default."""
    specs: dict[str, FeatureSpec] = {}
    required: set[str] = set()
    for binding in bindings:
        schema = binding.bundle.manifest.features
        for numeric in schema.numeric:
            specs.setdefault(numeric.name, FeatureSpec(name=numeric.name, type="number", default=numeric.default))
            if numeric.default is None:
                required.add(numeric.name)
        for categorical in schema.categorical:
            specs.setdefault(categorical.name, FeatureSpec(
                name=categorical.name, type="string", vocabulary_size=len(categorical.vocabulary)
            ))
    return Features(
        required=[spec for name, spec in specs.items() if name in required],
        optional=[spec for name, spec in specs.items() if name not in required],
    )


def _attributes(bindings: list[PolicyBinding]) -> list[AttributeSpec]:
    kinds: dict[str, AttributeType] = {}
    used: dict[str, list[str]] = {}
    for binding in bindings:
        policy = binding.policy.file
        for name, kind in policy.attributes.items():
            kinds.setdefault(name, kind)
        readers = [(f"utility:{t.name}", t.attribute) for t in policy.utility]
        readers += [(f"guardrail:{g.name}", g.attribute) for g in policy.guardrails]
        readers += [(f"slate:{r.name}", r.attribute) for r in policy.slate.max_per_value]
        readers += [(f"slate:{r.name}", r.attribute) for r in policy.slate.max_matching]
        for reader, attribute in readers:
            if attribute is not None and reader not in used.setdefault(attribute, []):
                used[attribute].append(reader)
    return [AttributeSpec(name=name, type=kind, used_by=used.get(name, [])) for name, kind in kinds.items()]


def _context_attributes(bindings: list[PolicyBinding]) -> list[ContextAttributeSpec]:
    used: dict[str, list[str]] = {}
    for binding in bindings:
        for override in binding.policy.file.overrides:
            for name in override.when:
                readers = used.setdefault(name, [])
                if f"override:{override.name}" not in readers:
                    readers.append(f"override:{override.name}")
    return [ContextAttributeSpec(name=name, used_by=readers) for name, readers in used.items()]
