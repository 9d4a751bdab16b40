"""The audit trail of policy changes: one JSON log line per change, applied or refused.

Line (logger `fusionrank.audit`): {"event": "policy_change", "at", "who", "source", "surface",
"action", "from", "to", "outcome": "applied" | "unchanged" | "refused", "persisted", "error"}.
`who` is the admin token's name (never the token) or `watcher`; `source` is `api` or `watch`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson

__all__ = ["PolicyChange", "audit"]

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
    """Stamp the change with the current UTC time and log it as one JSON line."""
    stamped = replace(change, at=datetime.now(UTC).isoformat(timespec="milliseconds"))
    line = orjson.dumps(stamped.to_dict()).decode()
    log.log(logging.WARNING if stamped.outcome == "refused" else logging.INFO, line)
    return stamped
