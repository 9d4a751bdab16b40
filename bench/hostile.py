"""Hostile inputs against a real `fusionrank serve`: what each costs the replica, and its other clients.

For every input of the red-team table (docs/reliability.md, "Hostile input"), on the default settings
and the shipped bundle, one worker, 127.0.0.1 only:

- the status the hostile client got and the time it took to get it;
- the server's RSS before, at its peak while the input was handled (sampled every 2 ms), and 2 s after;
- the p99 of normal requests (the bundle's sample request, 20 per second, sent all along) during the
  attack, against the idle p99 measured first; and whether every normal request was answered 200.

Artifact attacks (a 500-deep policy YAML, a 1e308 weight) are written into the server's own copy of
the policies folder and driven through the admin API. The SIGTERM drain with slow uploaders runs on a
second server at the end.

    python -m bench.hostile            # prints the table
    python -m bench.hostile --record   # and appends it to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import yaml

from app.settings import Settings
from bench.common import append_results, free_port, load_average, machine, now, percentiles, sample_request
from bench.live import ADMIN, Live, live_server

ARROW = "application/vnd.apache.arrow.stream"
ENVELOPE = orjson.dumps({"request_id": "hostile", "surface": "home"})


# --- measuring --------------------------------------------------------------------------------------


class RssSampler:
    """Peak VmRSS (MB) of one process while `window()` is open, sampled every 2 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()

    def read(self) -> float:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        self.peak = self.read()
        self._stop.clear()

        def poll() -> None:
            while not self._stop.wait(0.002):
                self.peak = max(self.peak, self.read())

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


def _normal_loop(url: str, rate: float, max_seconds: float, stop: Any, out: str) -> None:
    """The normal client's loop, in its own process: its latencies must not include the attacker's GIL."""
    body = orjson.dumps(sample_request())
    began = time.monotonic()
    with httpx.Client(timeout=30) as client, open(out, "a", buffering=1) as log:
        n = 0
        while not stop.is_set() and time.monotonic() - began < max_seconds:
            due = began + n / rate
            stop.wait(max(0.0, due - time.monotonic()))
            start = time.monotonic()
            try:
                status = client.post(f"{url}/v1/score", content=body,
                                     headers={"content-type": "application/json"}).status_code
            except httpx.HTTPError:
                status = 0
            log.write(f"{start} {time.monotonic() - start} {status}\n")
            n += 1


@dataclass
class NormalLoad:
    """The sample request at a steady rate on one connection, from a separate process (CLOCK_MONOTONIC is
    shared), so the attacking threads of this process never delay it; (start, seconds, status) per request."""

    url: str
    rate: float = 20.0
    max_seconds: float = 600.0
    _dir: Any = None
    _stop: Any = None
    _process: Any = None

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        self._dir = tempfile.TemporaryDirectory(prefix="hostile-normal-")
        self._stop = context.Event()
        self._process = context.Process(
            target=_normal_loop, args=(self.url, self.rate, self.max_seconds, self._stop, self._path()), daemon=True
        )
        self._process.start()

    def _path(self) -> str:
        return str(Path(self._dir.name) / "samples.txt")

    @property
    def samples(self) -> list[tuple[float, float, int]]:
        path = Path(self._path())
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows.append((float(parts[0]), float(parts[1]), int(parts[2])))
        return rows

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._process is not None:
            self._process.join(timeout=60)

    def between(self, t0: float, t1: float) -> list[tuple[float, float, int]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]


@dataclass
class Row:
    attack: str
    status: str
    seconds: float
    rss_before: float
    rss_peak: float
    rss_after: float
    normal_p99_ms: float
    normal_failed: int
    normal_count: int
    server_cpu: float = float("nan")
    note: str = ""


# --- the hostile clients ----------------------------------------------------------------------------


def arrow_stream(batch: pa.RecordBatch, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    schema = batch.schema.with_metadata({b"fusionrank.request": ENVELOPE})
    options = ipc.IpcWriteOptions(compression=compression)
    with ipc.new_stream(sink, schema, options=options) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue())


def zstd_zeros_body() -> bytes:
    """One float64 column of 100M zeros, zstd-compressed (~25 KB on the wire, 800 MB decompressed)."""
    zeros = pa.array(np.zeros(100_000_000))
    return arrow_stream(pa.record_batch([zeros], names=["item_price"]), compression="zstd")


def null_ids_body() -> bytes:
    """An `id` column of type null with 50M rows (a few hundred bytes on the wire)."""
    return arrow_stream(pa.record_batch([pa.nulls(50_000_000)], names=["id"]))


def empty_objects_body(size: int = 16 * 1024 * 1024 - 64) -> bytes:
    head = b'{"request_id":"hostile","surface":"home","candidates":['
    n = (size - len(head) - 3) // 3
    return head + b"{}," * n + b"{}]}"


def post(url: str, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> tuple[str, float]:
    start = time.monotonic()
    try:
        answer = httpx.post(f"{url}/v1/score", content=body, timeout=60,
                            headers={"content-type": content_type, **(extra or {})})
        status = str(answer.status_code)
    except httpx.HTTPError as exc:
        status = f"error: {type(exc).__name__}"
    return status, time.monotonic() - start


def concurrent_posts(url: str, body: bytes, content_type: str, n: int) -> tuple[str, float]:
    results: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one() -> None:
        outcome = post(url, body, content_type)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted({s for s, _ in results})
    return f"{n}x " + "/".join(statuses), max(t for _, t in results)


def raw_request(port: int, head: bytes, body_chunks: Iterator[bytes] | None = None, read: bool = True) -> str:
    """Send bytes on one socket; the status line's code, or what the connection did."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for chunk in body_chunks or iter(()):
                sock.sendall(chunk)
        except OSError as exc:  # the server closed on us mid-send: read what it said first
            status = _status(sock)
            return status if status != "closed" else f"reset while sending ({type(exc).__name__})"
        return _status(sock) if read else "sent"


def _status(sock: socket.socket) -> str:
    try:
        data = sock.recv(4096)
    except OSError:
        return "closed"
    if not data:
        return "closed"
    parts = data.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else "garbled"


def huge_header(port: int, mb: int = 64) -> tuple[str, float]:
    start = time.monotonic()
    head = b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: "

    def chunks() -> Iterator[bytes]:
        block = b"a" * (1 << 20)
        for _ in range(mb):
            yield block
        yield b"\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    status = raw_request(port, head, chunks())
    return status, time.monotonic() - start


class SlowUploaders:
    """`n` connections that send headers, then one body byte per second each."""

    def __init__(self, port: int, n: int = 64, length: int = 10_000) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n{" % length)
            self.sockets.append(sock)
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        for _ in range(120):  # at most two minutes
            if self._stop.wait(1.0):
                return
            for sock in list(self.sockets):
                try:
                    sock.sendall(b" ")
                except OSError:
                    self.sockets.remove(sock)
                    self.closed_by_server += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def aborted_uploads(port: int, n: int = 20) -> tuple[str, float]:
    start = time.monotonic()
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                         b"content-length: 200000\r\n\r\n" + b" " * 50_000)
    return f"{n} closed mid-body", time.monotonic() - start


def metric_sum(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def deep_yaml(depth: int = 500) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


def write_policy(live: Live, version: str, edit: Callable[[dict[str, object]], None]) -> None:
    policy = yaml.safe_load((live.policies / "home" / "1.yaml").read_text())
    policy["version"] = version
    edit(policy)
    (live.policies / "home" / f"{version}.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


def admin_activate(live: Live, version: str) -> str:
    answer = httpx.post(f"{live.url}/admin/policies/home/activate", json={"version": version}, headers=ADMIN,
                        timeout=30)
    return str(answer.status_code)


def feedback_same_event(url: str) -> tuple[str, str]:
    sample = httpx.post(f"{url}/v1/score", content=orjson.dumps(sample_request()), timeout=30,
                        headers={"content-type": "application/json"}).json()
    versions = sample["versions"]
    event = {"event_id": "hostile-ev-1", "prediction": 0.1, "label": 1, "model": versions["model"],
             "model_version": versions["model_version"], "calibration_version": versions["calibration_version"],
             "event_time": "2026-12-06T00:00:00+00:00"}
    events = [{**event, "task": "click"}, {**event, "task": "purchase", "label": 0}]
    answer = httpx.post(f"{url}/v1/feedback", json={"events": events}, timeout=30)
    body = answer.json()
    return str(answer.status_code), f"accepted {body.get('accepted')}, duplicates {body.get('duplicates')}"


# --- the run ----------------------------------------------------------------------------------------


def run(port: int, repeat_seconds: float = 4.0) -> tuple[list[Row], float, list[str]]:
    notes: list[str] = []
    zstd_body, null_body, objects_body = zstd_zeros_body(), null_ids_body(), empty_objects_body()
    at_limit = empty_objects_body(Settings.model_fields["max_body_bytes"].default - 64)
    notes.append(f"bodies: zstd zeros {len(zstd_body):,} B, null ids {len(null_body):,} B, "
                 f"empty objects {len(objects_body):,} B")
    with live_server(port) as live:
        sampler = RssSampler(live.pid)
        load = NormalLoad(live.url)
        load.start()
        time.sleep(3)  # warm
        t0 = time.monotonic()
        time.sleep(10)
        idle = [s for s in load.between(t0, time.monotonic()) if s[2] == 200]
        idle_p99 = percentiles([s[1] for s in idle])[1]
        rows: list[Row] = []

        def measure(name: str, attack: Callable[[], tuple[str, float]], note: str = "", settle: float = 2.0,
                    repeat_for: float | None = None) -> None:
            """Run `attack` again and again for `repeat_for` seconds (at most 200 times), so that enough normal
            requests fall inside the window for a p99; the slowest answer is reported."""
            repeat_for = repeat_seconds if repeat_for is None else repeat_for
            before = sampler.read()
            cpu_before = live.cpu_seconds()
            start = time.monotonic()
            statuses: list[str] = []
            seconds = 0.0
            with sampler.window():
                while True:
                    status, took = attack()
                    statuses.append(status)
                    seconds = max(seconds, took)
                    if time.monotonic() - start >= repeat_for or len(statuses) >= 200:
                        break
            end = time.monotonic()
            cpu = live.cpu_seconds() - cpu_before
            status = " / ".join(sorted(set(statuses))) + (f" (x{len(statuses)})" if len(statuses) > 1 else "")
            time.sleep(settle)
            normal = load.between(start, end + 0.5)
            latencies = [s[1] for s in normal]
            p99 = percentiles(latencies)[1] if latencies else float("nan")
            rows.append(Row(name, status, seconds, before, sampler.peak, sampler.read(), p99,
                            sum(1 for s in normal if s[2] != 200), len(normal), cpu, note))

        measure("Arrow, 100M float64 zeros, zstd", lambda: post(live.url, zstd_body, ARROW))
        measure("Arrow, null-typed id, 50M rows", lambda: post(live.url, null_body, ARROW))
        measure("row JSON, 16 MiB of empty objects", lambda: post(live.url, objects_body, "application/json"))
        measure(f"row JSON of empty objects at the body limit ({len(at_limit):,} B)",
                lambda: post(live.url, at_limit, "application/json"))
        measure("the same, 16 at once", lambda: concurrent_posts(live.url, objects_body, "application/json", 16))
        measure("64 MB request header", lambda: huge_header(port))

        def slow() -> tuple[str, float]:
            uploaders = SlowUploaders(port)
            start = time.monotonic()
            readyz = []
            try:
                while time.monotonic() - start < 12:
                    readyz.append(httpx.get(f"{live.url}/readyz", timeout=5).status_code)
                    time.sleep(1)
            finally:
                cut = uploaders.closed_by_server
                uploaders.close()
            return (f"{cut} of 64 cut by the server; /readyz {sorted(set(readyz))}",
                    time.monotonic() - start)

        measure("64 uploads at 1 byte/s, for 12 s", slow, repeat_for=0)
        shed_500 = metric_sum(live.url, "fusionrank_http_requests_total", route="/v1/score", status="500")
        log = live.policies.parent / "serve.log"
        errors_before = log.read_text(errors="replace").count("ERROR") if log.exists() else 0
        measure("20 clients closing mid-upload", lambda: aborted_uploads(port), repeat_for=0)
        shed_500_after = metric_sum(live.url, "fusionrank_http_requests_total", route="/v1/score", status="500")
        errors_after = log.read_text(errors="replace").count("ERROR") if log.exists() else 0
        rows[-1].note = (f'status="500" +{shed_500_after - shed_500:.0f}, '
                         f"ERROR log lines +{errors_after - errors_before} (the server logs at warning level here)")

        def deep_policy() -> tuple[str, float]:
            start = time.monotonic()
            (live.policies / "home" / "91.yaml").write_text(deep_yaml())
            time.sleep(2.5)  # a couple of watcher passes
            listing = httpx.get(f"{live.url}/admin/policies", headers=ADMIN, timeout=30).status_code
            deep = admin_activate(live, "91")
            later = admin_activate(live, "2")
            back = admin_activate(live, "1")
            ready = httpx.get(f"{live.url}/readyz", timeout=5).status_code
            return (f"list {listing}, activate deep {deep}, activate 2 {later}, back to 1 {back}, /readyz {ready}",
                    time.monotonic() - start)

        measure("policy YAML nested 500 deep in policies/home/", deep_policy, repeat_for=0)

        def huge_weight() -> tuple[str, float]:
            start = time.monotonic()

            def edit(policy: dict[str, object]) -> None:
                utility = policy["utility"]
                assert isinstance(utility, list)
                utility[1]["weight"] = 1e308

            write_policy(live, "92", edit)
            refused = admin_activate(live, "92")
            body = sample_request()
            for i, candidate in enumerate(body["candidates"][:4]):
                candidate.setdefault("attributes", {})["margin"] = [1e6, 1e300, -1e300, 1e299][i]
            answer = httpx.post(f"{live.url}/v1/score", content=orjson.dumps(body), timeout=30,
                                headers={"content-type": "application/json"})
            nulls = answer.text.count('"utility":null')
            return f"activate 1e308 weight {refused}; score {answer.status_code}, null utilities {nulls}", \
                time.monotonic() - start

        measure("weight 1e308, then margins of 1e6 and ±1e300", huge_weight, repeat_for=0)
        measure("click and purchase outcomes with one event_id",
                lambda: (lambda r: (f"{r[0]}: {r[1]}", 0.0))(feedback_same_event(live.url)), repeat_for=0)
        plain = orjson.dumps(sample_request())
        measure("Content-Encoding: gzip on plain JSON",
                lambda: post(live.url, plain, "application/json", {"content-encoding": "gzip"}))
        measure("Content-Encoding: gzip on gzipped JSON",
                lambda: post(live.url, gzip.compress(plain), "application/json", {"content-encoding": "gzip"}))
        measure("content-type: application/evil+json", lambda: post(live.url, plain, "application/evil+json"))
        load.stop()
    notes.append(sigterm_with_slow_uploaders(free_port()))
    return rows, idle_p99, notes


def sigterm_with_slow_uploaders(port: int) -> str:
    """Seconds from SIGTERM to exit with 64 slow uploaders connected (a second server)."""
    with live_server(port) as live:
        uploaders = SlowUploaders(port)
        time.sleep(1)
        start = time.monotonic()
        os.kill(live.pid, signal.SIGTERM)
        exited = None
        while time.monotonic() - start < 120:
            state = Path(f"/proc/{live.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] \
                if Path(f"/proc/{live.pid}/stat").exists() else "Z"
            if state == "Z":
                exited = time.monotonic() - start
                break
            time.sleep(0.05)
        uploaders.close()
    return (f"SIGTERM with 64 slow uploaders connected: exited after {exited:.1f} s" if exited is not None
            else "SIGTERM with 64 slow uploaders connected: still running after 120 s")


def table(rows: list[Row], idle_p99: float) -> list[str]:
    lines = [f"Normal requests (the sample request, 20/s) idle p99: {idle_p99:.1f} ms", "",
             "| input | answer | slowest answer | RSS before / peak / after (MB) | server CPU in the window "
             "| normal p99 during (ms) | normal not 200 | note |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r.attack} | {r.status} | {r.seconds:.2f} s | {r.rss_before:.0f} / {r.rss_peak:.0f} / "
            f"{r.rss_after:.0f} | {r.server_cpu:.2f} s | {r.normal_p99_ms:.1f} | {r.normal_failed} of {r.normal_count} "
            f"| {r.note} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--repeat-seconds", type=float, default=4.0,
                        help="send each short attack again and again for this long (0: once)")
    args = parser.parse_args()
    rows, idle_p99, notes = run(args.port or free_port(), args.repeat_seconds)
    lines = [f"Machine: {machine()}; {now()}; load average {load_average()}; each short attack repeated for "
             f"{args.repeat_seconds:g} s", "", *table(rows, idle_p99), "",
             *(f"- {n}" for n in notes)]
    print("\n".join(lines))
    if args.record:
        append_results("Hostile inputs (bench/hostile.py)", lines)


if __name__ == "__main__":
    main()
