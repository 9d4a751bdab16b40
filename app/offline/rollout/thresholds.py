"""What a canary must show to ship: per-metric rules, read from a YAML file or `--rule` options.

A rule compares the treatment arm with the control arm on one metric by the relative change
delta = treatment / control - 1 and its confidence interval [lo, hi]:
- `increase` metrics (clicks, purchases, utility): the metric passes when lo >= ship_at, and the canary
  aborts when hi < abort_at (it is surely worse than the abort bound);
- `decrease` metrics (hides, reports, a guardrail's filter rate): passes when hi <= ship_at, aborts when
  lo > abort_at.
The verdict is `abort` when any rule aborts, `ship` when both arms have `min_requests` requests and every
rule passes, else `hold` (keep collecting).

    control: stable
    treatment: canary
    min_requests: 2000
    rules:
      - {metric: click, direction: increase, ship_at: 0.0, abort_at: -0.05}
      - {metric: hide, direction: decrease, ship_at: 0.05, abort_at: 0.2}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from app.artifacts.common import StrictModel

__all__ = ["Rule", "Thresholds", "merged", "parse_rule", "read_thresholds"]


class Rule(StrictModel):
    metric: str = Field(min_length=1)  # a task, `utility`, `filtered:<rule>` or `share:<column>=<value>`
    direction: Literal["increase", "decrease"]
    ship_at: float = Field(ge=-1.0, le=100.0)
    abort_at: float = Field(ge=-1.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> Rule:
        worse = self.abort_at < self.ship_at if self.direction == "increase" else self.abort_at > self.ship_at
        if not worse and self.abort_at != self.ship_at:
            raise ValueError(f"rule {self.metric!r}: abort_at must lie on the bad side of ship_at (below it for an"
                             " `increase` metric, above it for a `decrease` one)")
        return self


class Thresholds(StrictModel):
    control: str = "stable"
    treatment: str = "canary"
    min_requests: int = Field(default=1000, ge=1)
    rules: list[Rule] = Field(min_length=1)


def read_thresholds(path: Path) -> Thresholds:
    """A thresholds YAML file; a problem names the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"--thresholds {path}: cannot read it as YAML ({exc})") from None
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ValueError(f"--thresholds {path}: {where}: {first['msg']} (see docs/closing-the-loop.md)") from None


def parse_rule(item: str) -> Rule:
    """`METRIC:increase|decrease:SHIP_AT:ABORT_AT`, e.g. `click:increase:0:-0.05`."""
    parts = item.split(":")
    # a metric may hold ':' itself (`filtered:report_risk`): the last three parts are the rule
    if len(parts) >= 4:
        metric, direction, ship, abort = ":".join(parts[:-3]), parts[-3], parts[-2], parts[-1]
        try:
            return Rule.model_validate({"metric": metric, "direction": direction, "ship_at": float(ship),
                                        "abort_at": float(abort)})
        except (ValueError, ValidationError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ValueError(f"--rule {item!r}: {reason}; expected METRIC:increase|decrease:SHIP_AT:ABORT_AT,"
                             " e.g. --rule click:increase:0:-0.05") from None
    raise ValueError(f"--rule {item!r}: expected METRIC:increase|decrease:SHIP_AT:ABORT_AT,"
                     " e.g. --rule click:increase:0:-0.05")


def merged(base: Thresholds | None, rules: Sequence[Rule], control: str | None, treatment: str | None,
           min_requests: int | None) -> Thresholds:
    """The file's thresholds with the command line's rules added and its arm names and minimum applied."""
    if base is None and not rules:
        raise ValueError("give the thresholds to judge by: --thresholds FILE or --rule METRIC:DIRECTION:SHIP:ABORT")
    data = base.model_dump() if base is not None else {"rules": []}
    data["rules"] = [*data["rules"], *[r.model_dump() for r in rules]]
    for key, value in (("control", control), ("treatment", treatment), ("min_requests", min_requests)):
        if value is not None:
            data[key] = value
    return Thresholds.model_validate(data)
