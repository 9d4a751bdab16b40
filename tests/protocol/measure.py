"""Decode one body in a fresh process and report what it cost: status, seconds, and the memory it took
(peak RSS growth, the peak of pyarrow's memory pool, the tracemalloc peak of Python objects).

A fresh process, because peaks cannot be reset: the test process has already built the hostile body.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["decode_cost"]

_CHILD = r"""
import json, resource, sys, time, tracemalloc
import pyarrow as pa
from app.api.errors import status_for
from app.errors import FusionrankError
from app.protocol.arrow import decode_arrow_request
from app.protocol.feedback import decode_feedback
from app.protocol.rows import decode_score_request

fmt, path, max_candidates, max_decoded = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = open(path, "rb").read()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
decode = {
    "arrow": lambda: decode_arrow_request(body, max_candidates=max_candidates, max_decoded_bytes=max_decoded),
    "json": lambda: decode_score_request(body, max_candidates=max_candidates),
    "feedback": lambda: decode_feedback(body, max_events=max_candidates),
}[fmt]
try:
    decode_score_request(b'{"request_id": "w", "surface": "s", "candidates": [{"id": "a"}]}', max_candidates=1)
except FusionrankError:
    pass
peak0, rss0, pool0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss(), pa.total_allocated_bytes()
tracemalloc.start()
t0 = time.perf_counter()
try:
    result = decode()
    status = 200
except FusionrankError as exc:
    result, status = None, int(status_for(exc))
seconds = time.perf_counter() - t0
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({
    "status": status, "seconds": seconds, "traced_peak": traced,
    "rss_peak_growth": max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - max(peak0, rss0)),
    "rss_kept": rss() - rss0, "pool_peak": pa.default_memory_pool().max_memory(), "pool_before": pool0,
}))
"""


def decode_cost(fmt: str, body: bytes, tmp: Path, *, max_candidates: int = 5000, max_decoded: int = 32 << 20) -> Any:
    """What decoding `body` ("arrow", "json" or "feedback") costs in a fresh interpreter."""
    path = tmp / "body.bin"
    path.write_bytes(body)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, fmt, str(path), str(max_candidates), str(max_decoded)],
        capture_output=True, text=True, check=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""},
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
