"""The careful hand-written peer: FastAPI with the raw body, orjson and numpy, onnxruntime (1 thread).

What a team would write when it cares about speed and skips the framework's validation: the body is
read as bytes and parsed by orjson, the feature matrices are built by one list comprehension per
block (candidate value, else the context's, else the manifest default), the composition (calibration
with segment corrections, utility, guardrails, slate rules, top_k) is the peers' shared one
(bench/peer_apps/composition.py), and the answer is encoded by orjson. No checks of the values, no
metrics. Served by bench/peers.py with `uvicorn bench.peer_apps.handwritten_app:app --port P` from the
repository root (PEER_MODEL_STORE, PEER_POLICIES name the artifacts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.peer_apps.composition import Composition

__all__ = ["app"]


class _Row:
    """A candidate as the shared composition reads it (`.id`, `.features`, `.attributes`), without pydantic."""

    __slots__ = ("attributes", "features", "id")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.id = raw["id"]
        self.features = raw.get("features") or {}
        self.attributes = raw.get("attributes") or {}


composition = Composition()
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
session = ort.InferenceSession(
    str(composition.bundle / "model.onnx"), sess_options=_options, providers=["CPUExecutionProvider"]
)
_numeric = composition.numeric
_categorical = composition.categorical
app = FastAPI()


def matrices(rows: list[_Row], context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """numeric float32 [B, N] and categorical int64 [B, C], one comprehension each."""
    numeric = np.array(
        [[r.features.get(name, context.get(name, default)) for name, default in _numeric] for r in rows],
        dtype=np.float32,
    )
    categorical = np.array(
        [[vocabulary.get(r.features.get(name, context.get(name)), 0) for name, vocabulary in _categorical]
         for r in rows],
        dtype=np.int64,
    )
    return numeric, categorical


@app.post("/v1/score")
async def score(request: Request) -> Response:
    body = orjson.loads(await request.body())
    rows = [_Row(c) for c in body["candidates"]]
    numeric, categorical = matrices(rows, (body.get("context") or {}).get("features") or {})
    (logits,) = session.run(["logits"], {"numeric": numeric, "categorical": categorical})
    top_k = (body.get("options") or {}).get("top_k")
    order, utility, p = composition.rank(np.asarray(logits), categorical, rows, top_k)  # type: ignore[arg-type]
    tasks = composition.tasks
    answer = {
        "request_id": body["request_id"], "surface": body["surface"],
        "candidates": [
            {"id": rows[i].id, "rank": r, "utility": float(utility[i]),
             "predictions": dict(zip(tasks, p[i].tolist(), strict=True))}
            for r, i in enumerate(order, start=1)
        ],
    }
    return Response(orjson.dumps(answer), media_type="application/json")
