"""BentoML 1.4 peer: onnxruntime (1 intra-op thread, like fusionrank) behind pydantic IO.

Served by bench/peers.py with `bentoml serve bench.peer_apps.bento_service:Ranker --port P` from the
repository root, PEER_MODEL_STORE / PEER_POLICIES naming the artifacts. POST /score takes the same
JSON body as fusionrank's /v1/score (request_id, surface, context, candidates, options).
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np
import onnxruntime as ort

from bench.peer_apps.composition import Answer, Candidate, Composition, Context


# Access logging off, as fusionrank has none: a log line per request would tax BentoML alone.
@bentoml.service(workers=1, traffic={"timeout": 60}, logging={"access": {"enabled": False}})
class Ranker:
    def __init__(self) -> None:
        self.composition = Composition()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.composition.bundle / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )

    @bentoml.api
    def score(
        self, request_id: str, surface: str, candidates: list[Candidate], context: Context | None = None,
        options: dict[str, Any] | None = None,
    ) -> Answer:
        composition = self.composition
        context = context or Context()
        numeric, categorical = composition.encode(candidates, context)
        (logits,) = self.session.run(["logits"], {"numeric": numeric, "categorical": categorical})
        top_k = (options or {}).get("top_k")
        order, utility, p = composition.rank(np.asarray(logits), categorical, candidates, top_k)
        return composition.answer(request_id, surface, candidates, order, utility, p)
