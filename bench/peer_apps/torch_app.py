"""The obvious peer: FastAPI + a pydantic model per candidate + torch eager.

The torch module is rebuilt from the ONNX file's weights (onnx.numpy_helper), with the same
layers as the exported ranker: normalisation buffers, one embedding table per categorical feature,
a ReLU MLP trunk and a linear head per task. Served by bench/peers.py with
`uvicorn bench.peer_apps.torch_app:app --port P` from the repository root (PEER_MODEL_STORE,
PEER_POLICIES name the artifacts). torch runs with 1 intra-op thread, like fusionrank's ORT.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
import torch
from fastapi import FastAPI
from onnx import numpy_helper
from pydantic import BaseModel, Field
from torch import nn

from bench.peer_apps.composition import Answer, Candidate, Composition, Context

torch.set_num_threads(1)


class ScoreBody(BaseModel):
    request_id: str
    surface: str
    context: Context = Field(default_factory=Context)
    candidates: list[Candidate]
    options: dict[str, Any] = Field(default_factory=dict)


class RebuiltRanker(nn.Module):
    """The exported ranker's forward, from its ONNX initializers."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()

        def find(pattern: str) -> list[tuple[tuple[int, ...], np.ndarray]]:
            found = []
            for name, value in weights.items():
                match = re.fullmatch(pattern, name)
                if match:
                    found.append((tuple(int(g) for g in match.groups()), value))
            return sorted(found, key=lambda item: item[0])

        def one(name: str) -> torch.Tensor:
            matches = [v for k, v in weights.items() if k == name or k.endswith("." + name)]
            if not matches:
                raise SystemExit(f"no initializer {name!r} in the ONNX file (has {sorted(weights)})")
            return torch.as_tensor(matches[0])

        self.mean = one("numeric_mean").float()
        self.std = one("numeric_std").float()
        self.log_flags = one("log_numeric").bool()
        self.embeddings = nn.ModuleList()
        for _, table in find(r".*embeddings\.(\d+)\.weight"):
            embedding = nn.Embedding(*table.shape)
            embedding.weight.data = torch.as_tensor(table)
            self.embeddings.append(embedding)
        layers: list[nn.Module] = []
        trunk_weights = find(r".*trunk\.(\d+)\.weight")
        trunk_biases = dict(find(r".*trunk\.(\d+)\.bias"))
        for key, weight in trunk_weights:
            linear = nn.Linear(weight.shape[1], weight.shape[0])
            linear.weight.data = torch.as_tensor(weight)
            linear.bias.data = torch.as_tensor(trunk_biases[key])
            layers += [linear, nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        head = one("heads.weight")
        self.heads = nn.Linear(head.shape[1], head.shape[0])
        self.heads.weight.data = head
        self.heads.bias.data = one("heads.bias")

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.log_flags, torch.log1p(torch.clamp(numeric, min=0.0)), numeric)
        parts = [(x - self.mean) / self.std]
        parts += [table(categorical[:, j]) for j, table in enumerate(self.embeddings)]
        return self.heads(self.trunk(torch.cat(parts, dim=1)))


composition = Composition()
_graph = onnx.load(str(composition.bundle / "model.onnx"))
model = RebuiltRanker({i.name: numpy_helper.to_array(i).copy() for i in _graph.graph.initializer}).eval()
app = FastAPI()


@app.post("/v1/score")
def score(body: ScoreBody) -> Answer:
    numeric, categorical = composition.encode(body.candidates, body.context)
    with torch.inference_mode():
        logits = model(torch.from_numpy(numeric), torch.from_numpy(categorical)).numpy()
    order, utility, p = composition.rank(logits, categorical, body.candidates, body.options.get("top_k"))
    return composition.answer(body.request_id, body.surface, body.candidates, order, utility, p)
