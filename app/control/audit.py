"""The audit trail of policy changes: one structured log record per change, applied or refused, and its counters.

Record (logger `fusionrank.audit`): the message `policy_change <action> <surface>: <from> -> <to> <outcome>`
and the fields `AUDIT_FIELDS` as record attributes, so the JSON log format writes them as fields of the
line's object (not JSON inside a message): "event": "policy_change", "at", "who", "source", "surface",
"action", "from", "to", "outcome": "applied" | "unchanged" | "refused", "persisted", "error".
`who` is the admin token's name (never the token) or `watcher`; `source` is `api` or `watch`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.monitoring.metrics import ServiceMetrics

__all__ = ["AUDIT_FIELDS", "AuditTrail", "PolicyChange", "audit"]

AUDIT_FIELDS = ("event", "at", "who", "source", "surface", "action", "from", "to", "outcome", "persisted", "error")

log = logging.getLogger("fusionrank.audit")


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One change of what a surface serves (or an attempt at one)."""

    surface: str
    action: str  # activate | rollback | reload | shadow | load
    source: str  # api | watch
    who: str
    before: str | None
    after: str | None
    outcome: str  # applied | unchanged | refused
    persisted: bool | None = None  # pointer file written (API changes only)
    error: str | None = None
    at: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "event": "policy_change", "at": self.at, "who": self.who, "source": self.source,
            "surface": self.surface, "action": self.action, "from": self.before, "to": self.after,
            "outcome": self.outcome, "persisted": self.persisted, "error": self.error,
        }


def audit(change: PolicyChange) -> PolicyChange:
    """Stamp the change with the current UTC time and log it as one structured record."""
    stamped = replace(change, at=datetime.now(UTC).isoformat(timespec="milliseconds"))
    level = logging.WARNING if stamped.outcome == "refused" else logging.INFO
    log.log(level, "policy_change %s %s: %s -> %s %s", stamped.action, stamped.surface, stamped.before,
            stamped.after, stamped.outcome, extra=stamped.to_dict())
    return stamped


class AuditTrail:
    """Audit a change and count it, under the metrics of the API that made it.

    Policy changes (`/admin/policies` and the watcher) count `fusionrank_policy_activations` (applied;
    a `load` only makes a version servable and is not counted), `..._activation_failures` (refused) and
    `fusionrank_policy_file_rejections` (a refused `load`); triple changes (`/admin/surfaces`) count
    `fusionrank_bundle_activations` and `..._activation_failures` by action.
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def policy(self, change: PolicyChange) -> PolicyChange:
        if change.outcome == "refused":
            if change.action == "load":
                self._metrics.policy_file_rejections.labels(change.surface).inc()
            else:
                self._metrics.policy_activation_failures.labels(change.surface, change.source).inc()
        elif change.outcome == "applied" and change.action != "load":
            self._metrics.policy_activations.labels(change.surface, change.source).inc()
        return audit(change)

    def triple(self, change: PolicyChange) -> PolicyChange:
        if change.outcome == "refused":
            self._metrics.bundle_activation_failures.labels(change.surface, change.action).inc()
        elif change.outcome == "applied":
            self._metrics.bundle_activations.labels(change.surface, change.action).inc()
        return audit(change)
