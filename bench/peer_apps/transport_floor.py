"""The transport floor: a bare ASGI app that reads the whole body and answers a fixed 3 kB JSON.

No framework, no parsing, no model: what uvicorn (httptools, uvloop) and the load generator cost
for a body of that size on this machine. `bench/score_bench.py` serves it beside fusionrank and
sends it the same bodies, so that the columnar target ("p50 within 2x ort.run") can be read
against what HTTP alone takes: `uvicorn bench.peer_apps.transport_floor:app --port P`.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

ANSWER = b'{"candidates": "' + b"x" * 3000 + b'"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:  # read the body whole, as any server must
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
