"""Hostile connections against a real `fusionrank serve` (the behaviour is the server's: uvicorn's
protocol, the admission middleware, the drain): oversized and slow headers, slow uploaders, clients
that go away mid-upload, SIGTERM with uploaders connected, and bodies past the memory budget.

Each test asserts the answer and its time, the server's RSS growth (VmRSS), and that normal /v1/score
requests sent meanwhile were all answered 200 with a p99 near the idle p99 (tolerant of a loaded
2-core machine; a starved replica answers 503 or takes seconds, which fails it).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.live import LiveServer, Prober, live_server, p99, raw_request_head

HEADER_TIMEOUT = 1.0  # seconds; the module's server sets it (default 10 s) so the slow-header test is quick
JSON_HEAD = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(
        tmp_path_factory.mktemp("serve"), FUSIONRANK_HEADER_READ_TIMEOUT_SECONDS=str(HEADER_TIMEOUT)
    ) as live:
        yield live


@pytest.fixture(scope="module")
def idle_p99(server: LiveServer, sample_request_body: dict[str, Any]) -> float:
    return Prober(server, sample_request_body).idle_p99()


def _assert_served_meanwhile(prober: Prober, idle_p99: float) -> None:
    assert len(prober.statuses) >= 5, "too few normal requests were sent to judge"
    assert set(prober.statuses) == {200}, prober.statuses
    during = p99(prober.latencies)
    assert during <= max(2 * idle_p99, idle_p99 + 0.25), f"p99 {during * 1000:.0f} ms vs idle {idle_p99 * 1000:.0f} ms"


def _read_answer(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """The first bytes the server answers on `sock` within `timeout` (b"" if none, or it closed) and the
    seconds it took."""
    t0 = time.perf_counter()
    sock.settimeout(timeout)
    try:
        answer = sock.recv(4096)
    except (ConnectionResetError, TimeoutError):
        answer = b""
    return answer, time.perf_counter() - t0


def test_oversized_header_is_answered_431_at_once_without_keeping_it(
    server: LiveServer, sample_request_body: dict[str, Any], idle_p99: float
) -> None:
    before = server.rss_mb()
    with Prober(server, sample_request_body) as prober:
        sock = server.connect()
        t0 = time.perf_counter()
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nhost: x\r\nx-big: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:  # what the red team sent; the server closes long before
                sock.sendall(b"a" * 65_536)
                sent += 65_536
        except OSError:
            pass
        answer, _ = _read_answer(sock, 5)
        seconds = time.perf_counter() - t0
        sock.close()
        time.sleep(0.3)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert seconds < 1.0
    assert sent < 8 * 1024 * 1024  # refused while the header was arriving, not after it
    assert prober.peak_rss_mb - before < 20
    _assert_served_meanwhile(prober, idle_p99)


def test_headers_near_the_limit_and_in_small_pieces_are_served(server: LiveServer) -> None:
    """No false 431: 24 KB of headers (limit 32 KiB) sent 1 KB per write; then 40 KB the same way is refused."""
    for size, expected in ((24_000, b"HTTP/1.1 200"), (40_000, b"HTTP/1.1 431")):
        sock = server.connect()
        head = raw_request_head("/healthz", {"x-pad": "p" * size}).replace(b"POST", b"GET", 1)
        for start in range(0, len(head), 1024):
            try:
                sock.sendall(head[start:start + 1024])
            except OSError:
                break
            time.sleep(0.001)
        answer, _ = _read_answer(sock, 5)
        sock.close()
        assert answer.startswith(expected), (size, answer[:80])


def test_a_whole_request_with_a_large_body_in_one_read_is_served(
    server: LiveServer, sample_request_body: dict[str, Any]
) -> None:
    """No false 431: headers and a ~100 KB body in one write (one read on the server), twice on one connection."""
    pool = sample_request_body["candidates"]
    candidates = [{**pool[i % len(pool)], "id": f"c{i}"} for i in range(300)]
    body = httpx.Request("POST", "http://x", json={**sample_request_body, "candidates": candidates}).content
    assert len(body) > 2 * 32 * 1024
    head = (f"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    sock = server.connect()
    sock.settimeout(10)
    reader = sock.makefile("rb")
    for _ in range(2):  # the second request on the same keep-alive connection
        sock.sendall(head + body)
        status = reader.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        assert b'"candidates"' in reader.read(length)
    reader.close()
    sock.close()


def test_slow_headers_are_cut_at_the_header_timeout(server: LiveServer) -> None:
    head = raw_request_head("/v1/score", JSON_HEAD)
    sock = server.connect()
    t0 = time.perf_counter()
    answer = b""
    try:
        for byte in head[:40]:  # one header byte every 0.25 s: the head would take 10 s
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            answer, _ = _read_answer(sock, 0.25)
            if answer:
                break
    finally:
        sock.close()
    seconds = time.perf_counter() - t0
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert HEADER_TIMEOUT - 0.1 < seconds < HEADER_TIMEOUT + 1.0


def test_64_slow_uploaders_are_cut_and_never_starve_scoring(
    server: LiveServer, sample_request_body: dict[str, Any], idle_p99: float
) -> None:
    """64 bodies at 1 byte/s: each answered 408 once below the minimum rate (default 64 KiB/s after 1 s);
    meanwhile scoring answers 200 at its usual speed and /readyz says 200 (it can take work)."""
    before = server.rss_mb()
    answers: list[tuple[bytes, float]] = []
    lock = threading.Lock()
    sockets = []
    for _ in range(64):
        sock = server.connect()
        sock.sendall(raw_request_head("/v1/score", {**JSON_HEAD, "content-length": "1000"}))
        sockets.append(sock)

    def drip(sock: socket.socket) -> None:
        t0 = time.perf_counter()
        for _ in range(10):  # bounded: 10 s at most
            try:
                sock.sendall(b" ")
            except OSError:
                break
            answer, _ = _read_answer(sock, 1.0)
            if answer:
                break
        else:
            answer = b""
        with lock:
            answers.append((answer, time.perf_counter() - t0))

    readyz: list[int] = []
    with Prober(server, sample_request_body) as prober:
        threads = [threading.Thread(target=drip, args=(sock,), daemon=True) for sock in sockets]
        for thread in threads:
            thread.start()
        for _ in range(5):
            readyz.append(httpx.get(f"{server.base}/readyz", timeout=5).status_code)
            time.sleep(0.1)
        for thread in threads:
            thread.join(15)
    for sock in sockets:
        sock.close()
    assert len(answers) == 64
    assert all(a.startswith(b"HTTP/1.1 408") for a, _ in answers), {a[:20] for a, _ in answers}
    assert max(seconds for _, seconds in answers) < 3.0  # ~1 s grace; never the 30 s the red team saw
    assert readyz == [200] * 5
    assert prober.peak_rss_mb - before < 20
    _assert_served_meanwhile(prober, idle_p99)


def test_client_gone_mid_upload_is_a_499_logged_once_at_info(
    server: LiveServer, sample_request_body: dict[str, Any], idle_p99: float
) -> None:
    aborts = 10
    score = 'fusionrank_http_requests_total{route="/v1/score",status='
    closed_before = server.metric(score + '"499"}')
    errors_before = server.metric(score + '"500"}')
    log_before = len(server.log.read_text())
    with Prober(server, sample_request_body) as prober:
        for _ in range(aborts):
            sock = server.connect()
            sock.sendall(raw_request_head("/v1/score", {**JSON_HEAD, "content-length": "100000"}) + b"[" * 500)
            time.sleep(0.05)
            sock.close()
        time.sleep(0.5)
    assert server.metric(score + '"499"}') - closed_before == aborts
    assert server.metric(score + '"500"}') == errors_before
    log = server.log.read_text()[log_before:]
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]
    assert log.count("the client closed the connection") == aborts
    _assert_served_meanwhile(prober, idle_p99)


@pytest.mark.slow
def test_sigterm_drains_in_time_with_slow_uploaders_connected(
    tmp_path: Path, sample_request_body: dict[str, Any]
) -> None:
    """Worst case: no body deadline at all (both off), 32 uploaders stalled mid-body. SIGTERM: /readyz 503
    and scoring still served for the drain, then the uploads are closed and the process exits 0 at once,
    not after the 20 s grace period."""
    drain = 1.0
    with live_server(
        tmp_path, FUSIONRANK_BODY_READ_TIMEOUT_SECONDS="0", FUSIONRANK_BODY_MIN_BYTES_PER_SECOND="0",
        FUSIONRANK_SHUTDOWN_DRAIN_SECONDS=str(drain), FUSIONRANK_SHUTDOWN_GRACE_SECONDS="20",
    ) as live:
        sockets = []
        for _ in range(32):
            sock = live.connect()
            sock.sendall(raw_request_head("/v1/score", {**JSON_HEAD, "content-length": "1000"}) + b"[")
            sockets.append(sock)
        time.sleep(0.2)
        with httpx.Client(timeout=5) as client:
            assert client.post(f"{live.base}/v1/score", json=sample_request_body).status_code == 200
            t0 = time.monotonic()
            live.process.send_signal(signal.SIGTERM)
            assert client.get(f"{live.base}/readyz").status_code == 503
            assert client.post(f"{live.base}/v1/score", json=sample_request_body).status_code == 200
        exit_code = live.process.wait(timeout=30)
        seconds = time.monotonic() - t0
        for sock in sockets:
            sock.close()
        assert exit_code == 0, live.log.read_text()[-3000:]
        assert seconds < drain + 2.0, f"exit {seconds:.1f} s after SIGTERM"


@pytest.mark.slow
def test_bodies_past_the_memory_budget_are_shed_before_they_are_read(
    tmp_path: Path, sample_request_body: dict[str, Any]
) -> None:
    """The red team's 16 concurrent bodies of empty JSON objects, scaled down (2 MiB bodies, a 96 MiB
    budget: 72 MiB of parse cost each, so one fits at a time): 15 are answered 503 + Retry-After on their
    headers alone, in well under a second, while the admitted one is parsed (and refused by the decoder)."""
    size = 2 * 1024 * 1024
    body = b'{"request_id":"r","surface":"home","candidates":[' + b",".join([b"{}"] * (size // 3 - 30)) + b"]}"
    with live_server(tmp_path, FUSIONRANK_MEMORY_BUDGET_BYTES=str(96 * 1024 * 1024)) as live:
        prober = Prober(live, sample_request_body)
        idle = prober.idle_p99(30)
        before = live.rss_mb()
        head = raw_request_head("/v1/score", {**JSON_HEAD, "content-length": str(len(body))})
        with prober:
            admitted = live.connect()
            admitted.sendall(head + body[: len(body) // 2])  # the first one holds the budget, body half sent
            time.sleep(0.2)
            shed: list[tuple[bytes, float]] = []
            for _ in range(15):
                sock = live.connect()
                sock.sendall(head)  # no body sent: the answer must come on the headers alone
                shed.append(_read_answer(sock, 5))
                sock.close()
            admitted.sendall(body[len(body) // 2:])
            answer, _ = _read_answer(admitted, 30)
            admitted.close()
            time.sleep(0.3)
        after = live.rss_mb()
    assert all(a.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in a.lower() for a, _ in shed), shed[0][0][:300]
    assert max(seconds for _, seconds in shed) < 1.0
    assert answer.split(b" ", 2)[1] in {b"413", b"422"}, answer[:200]
    assert prober.peak_rss_mb - before < 150  # one parse of 2 MiB (~72 MB) at a time, never 16
    assert after - before < 50
    assert set(prober.statuses) == {200}
    del idle  # scoring stalls while the decoder parses the admitted body: the decoder's cost, not admission's
