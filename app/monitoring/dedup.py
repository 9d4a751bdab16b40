"""Recently counted feedback events, so that a retried batch is counted once.

An event is identified by its (event_id, task): one served candidate has one event_id and an outcome
per task (a click, then a purchase, share the id), and each outcome counts once.

The window is per replica and bounded twice: at most `max_ids` keys, each remembered for at most
`max_age_seconds`; the oldest are forgotten first. A retry that reaches the same replica within the
window is not counted again; a retry that reaches another replica, or comes later than the window,
is (callers that retry across replicas should route feedback by event id, or accept that rate).
Keys are kept as 16-byte BLAKE2b digests: memory is about 100 bytes per key whatever the id's length.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = ["EventKey", "RecentEventIds"]

EventKey = tuple[str, str]  # (event_id, task)


class RecentEventIds:
    """A bounded, time-limited set of (event_id, task) keys (insertion order = age order)."""

    def __init__(
        self, *, max_ids: int, max_age_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_ids = max_ids
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: EventKey) -> bool:
        self._expire()
        return _digest(key) in self._seen

    def add(self, keys: Iterable[EventKey]) -> None:
        """Remember events that were just counted."""
        if self.max_ids <= 0:
            return
        now = self._clock()
        for key in keys:
            digest = _digest(key)
            self._seen.pop(digest, None)
            self._seen[digest] = now
        while len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)

    def _expire(self) -> None:
        oldest = self._clock() - self.max_age_seconds
        while self._seen:
            digest, added = next(iter(self._seen.items()))
            if added >= oldest:
                break
            del self._seen[digest]


def _digest(key: EventKey) -> bytes:
    event_id, task = key
    # The task's length first: ("ab", "c") and ("a", "bc") never share a digest.
    task_bytes = task.encode("utf-8", "surrogatepass")
    data = len(task_bytes).to_bytes(4, "big") + task_bytes + event_id.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()
