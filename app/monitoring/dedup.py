"""Recently counted feedback event ids, so that a retried batch is counted once.

The window is per replica and bounded twice: at most `max_ids` ids, each remembered for at most
`max_age_seconds`; the oldest are forgotten first. A retry that reaches the same replica within the
window is not counted again; a retry that reaches another replica, or comes later than the window,
is (callers that retry across replicas should route feedback by event id, or accept that rate).
Ids are kept as 16-byte BLAKE2b digests: memory is about 100 bytes per id whatever the id's length.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RecentEventIds"]


class RecentEventIds:
    """A bounded, time-limited set of event ids (insertion order = age order)."""

    def __init__(
        self, *, max_ids: int, max_age_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_ids = max_ids
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: str) -> bool:
        self._expire()
        return _key(event_id) in self._seen

    def add(self, event_ids: list[str]) -> None:
        """Remember ids that were just counted."""
        if self.max_ids <= 0:
            return
        now = self._clock()
        for event_id in event_ids:
            key = _key(event_id)
            self._seen.pop(key, None)
            self._seen[key] = now
        while len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)

    def _expire(self) -> None:
        oldest = self._clock() - self.max_age_seconds
        while self._seen:
            key, added = next(iter(self._seen.items()))
            if added >= oldest:
                break
            del self._seen[key]


def _key(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
