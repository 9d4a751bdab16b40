"""Graceful shutdown: on SIGTERM turn `/readyz` 503 first, keep serving while load balancers notice,
then let uvicorn stop accepting, finish the requests in flight and exit within its grace period.

Timeline of one SIGTERM (settings in brackets):
1. `/readyz` answers 503 at once; work requests are still served   [shutdown_drain_seconds]
2. uvicorn closes the listening socket and idle keep-alive connections; connections still uploading
   a request body are closed too (app/api/server.py: such a request cannot be answered within a
   drain, and a slow uploader must not hold the shutdown); the requests in flight get up to
                                                                    [shutdown_grace_seconds]
3. lifespan shutdown (watcher and PSI task stopped); exit code 0 (uvicorn alone would re-raise
   the signal and exit 143).
A second SIGTERM or SIGINT during step 1 skips the rest of the drain.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import uvicorn

__all__ = ["DrainingServer", "ShutdownDrain"]

log = logging.getLogger("fusionrank.shutdown")


class ShutdownDrain:
    """Set once a termination signal arrived; `/readyz` answers 503 from then on."""

    def __init__(self) -> None:
        self._begun_at: float | None = None

    @property
    def begun(self) -> bool:
        return self._begun_at is not None

    def begin(self) -> None:
        if self._begun_at is None:
            self._begun_at = time.monotonic()


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains for `drain_seconds` before it starts its own graceful shutdown."""

    def __init__(self, config: uvicorn.Config, drain: ShutdownDrain, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_seconds = drain_seconds
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.begun or self.drain_seconds <= 0:
            if self._timer is not None:
                self._timer.cancel()
            self.drain.begin()
            self._exit_now(sig)
            return
        self.drain.begin()
        log.info(
            "%s: /readyz answers 503; serving for %.1f s more, then finishing the requests in flight",
            signal.Signals(sig).name, self.drain_seconds,
        )
        # uvicorn polls `should_exit` from its main loop; setting it from a timer thread is safe.
        self._timer = threading.Timer(self.drain_seconds, self._exit_now, args=(sig,))
        self._timer.daemon = True
        self._timer.start()

    def _exit_now(self, sig: int) -> None:
        super().handle_exit(sig, None)
        # uvicorn re-raises captured signals once it has shut down, so a graceful exit would look like
        # death by SIGTERM (status 143). A drained, completed shutdown exits 0 instead; a second signal
        # during the grace period still forces the exit (uvicorn's force_exit).
        self._captured_signals.clear()
