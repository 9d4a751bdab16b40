"""Schema of a policy file (`policies/<surface>/<version>.yaml`): the business utility of a surface.

A policy never changes the model; it composes the model's calibrated predictions:
- ``utility``: terms ``weight x p_task`` and value terms ``weight x p_task x attribute``; the sign of
  a weight is explicit, and a task the manifest declares negative may only carry a weight <= 0;
- ``guardrails``: hard filters, each named, on a calibrated prediction (``above``/``below``) or a
  candidate attribute (``equals``/``in``/``required``); a matching candidate is removed;
- ``slate``: rules applied after ordering by utility, in file order, then ``top_k``;
- ``overrides``: weights or thresholds replaced when the request context matches;
- ``governance``: who owns and who approved it, and why it changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from app.artifacts.common import FiniteFloat, Identifier, StrictModel

__all__ = [
    "AttributeType",
    "Governance",
    "Guardrail",
    "MaxMatchingRule",
    "MaxPerValueRule",
    "ModelRef",
    "Override",
    "PolicyFile",
    "SlateRules",
    "UtilityTerm",
]

AttributeType = Literal["number", "string", "boolean"]
Scalar = str | int | float | bool


class ModelRef(StrictModel):
    name: Identifier
    version: Identifier


class UtilityTerm(StrictModel):
    """`weight x p_task`, or with `attribute` the value term `weight x p_task x attribute`."""

    name: Identifier
    task: Identifier
    weight: FiniteFloat
    attribute: Identifier | None = None


class Guardrail(StrictModel):
    """A hard filter; exactly one of the two forms:
    prediction: `task` with `above` and/or `below` (removes p > above or p < below);
    attribute: `attribute` with one of `equals`, `in`, `required: true`.
    """

    name: Identifier
    task: Identifier | None = None
    above: FiniteFloat | None = Field(default=None, ge=0, le=1)
    below: FiniteFloat | None = Field(default=None, ge=0, le=1)
    attribute: Identifier | None = None
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    required: bool | None = None

    model_config = StrictModel.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _one_form(self) -> Guardrail:
        if (self.task is None) == (self.attribute is None):
            raise ValueError("a guardrail names exactly one of `task` (prediction filter) or `attribute`")
        if self.task is not None:
            if self.above is None and self.below is None:
                raise ValueError(f"guardrail {self.name!r} on task needs `above` and/or `below`")
            if self.equals is not None or self.in_ is not None or self.required is not None:
                raise ValueError(f"guardrail {self.name!r} on a task takes only `above`/`below`")
        else:
            forms = [self.equals is not None, self.in_ is not None, self.required is True]
            if sum(forms) != 1:
                raise ValueError(
                    f"guardrail {self.name!r} on an attribute needs exactly one of `equals`, `in`,"
                    " `required: true`"
                )
            if self.above is not None or self.below is not None:
                raise ValueError(f"guardrail {self.name!r} on an attribute cannot use `above`/`below`")
        return self


class MaxPerValueRule(StrictModel):
    """At most `max` candidates per distinct value of `attribute` (e.g. per creator)."""

    name: Identifier
    attribute: Identifier
    max: int = Field(ge=1)


class MaxMatchingRule(StrictModel):
    """At most `max` candidates whose `attribute` equals `equals` (e.g. sponsored = true)."""

    name: Identifier
    attribute: Identifier
    equals: Scalar
    max: int = Field(ge=0)


class SlateRules(StrictModel):
    top_k: int | None = Field(default=None, ge=1)
    max_per_value: list[MaxPerValueRule] = Field(default_factory=list)
    max_matching: list[MaxMatchingRule] = Field(default_factory=list)


class Override(StrictModel):
    """Replace term weights (by term name) or guardrail thresholds (by guardrail name) in a context.

    `when` matches when every listed context attribute equals its value.
    """

    name: Identifier
    when: dict[Identifier, Scalar] = Field(min_length=1)
    weights: dict[Identifier, FiniteFloat] = Field(default_factory=dict)
    thresholds: dict[Identifier, FiniteFloat] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in thresholds.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1]: {bad}")
        return thresholds


class Governance(StrictModel):
    owner: str = Field(min_length=1)
    # Empty only for drafts (e.g. written by `fusionrank simulate --emit-policy`): never served.
    approved_by: list[str]
    created_at: datetime
    change_note: str = Field(min_length=1)


class PolicyFile(StrictModel):
    """One version of one surface's policy."""

    schema_version: Literal[1]
    surface: Identifier
    name: str = Field(min_length=1)
    version: Identifier
    model: ModelRef
    calibration_version: Identifier
    # Candidate attributes the policy reads, with their JSON type; requests are checked against it.
    attributes: dict[Identifier, AttributeType] = Field(default_factory=dict)
    utility: list[UtilityTerm] = Field(min_length=1)
    guardrails: list[Guardrail] = Field(default_factory=list)
    slate: SlateRules = SlateRules()
    overrides: list[Override] = Field(default_factory=list)
    governance: Governance

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyFile:
        for kind, names in (
            ("utility term", [t.name for t in self.utility]),
            ("guardrail", [g.name for g in self.guardrails]),
            ("override", [o.name for o in self.overrides]),
            (
                "slate rule",
                [r.name for r in self.slate.max_per_value] + [r.name for r in self.slate.max_matching],
            ),
        ):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} names must be unique: {dup}")
        return self

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
