"""MMoE and shared-bottom rankers: the ONNX contract, baked-in normalisation, export parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from app.offline.export import export_onnx, parity_max_abs_diff
from app.offline.mmoe import MMoERanker
from app.offline.model import MultiTaskRanker

N, VOCAB, TASKS = 5, [3, 40], 3


def _inputs(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    numeric = (rng.lognormal(1.0, 1.0, (rows, N)) * 10).astype(np.float32)
    categorical = np.stack([rng.integers(0, v + 1, rows) for v in VOCAB], axis=1).astype(np.int64)
    return numeric, categorical


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    common = {
        "numeric_mean": np.full(N, 2.0),
        "numeric_std": np.full(N, 1.5),
        "vocabulary_sizes": VOCAB,
        "n_tasks": TASKS,
        "log_numeric": [True, False, True, False, True],
    }
    return {
        "mmoe": MMoERanker(experts=3, expert_hidden=[16], tower_hidden=[8], **common),
        "shared_bottom": MultiTaskRanker(hidden=[16], **common),
    }


def test_mmoe_gates_are_a_distribution_per_task_and_logits_have_task_columns() -> None:
    model = _models()["mmoe"]
    numeric, categorical = _inputs(9)
    x = model.inputs(torch.from_numpy(numeric), torch.from_numpy(categorical))
    gates = torch.softmax(model.gates(x).reshape(-1, TASKS, 3), dim=2)
    torch.testing.assert_close(gates.sum(dim=2), torch.ones(9, TASKS))
    assert model(torch.from_numpy(numeric), torch.from_numpy(categorical)).shape == (9, TASKS)


def test_normalisation_is_inside_the_model() -> None:
    model = _models()["shared_bottom"]
    numeric = torch.tensor([[np.e - 1, 2.0, 0.0, 3.5, -4.0]])
    normalised = model.inputs.normalise(numeric)
    # log1p(e - 1) = 1 -> (1 - 2) / 1.5; raw 2.0 -> 0; log1p(0) = 0; 3.5 raw; negative clipped to 0 before log1p
    torch.testing.assert_close(normalised, torch.tensor([[-1 / 1.5, 0.0, -2 / 1.5, 1.0, -2 / 1.5]]))


@pytest.mark.parametrize("kind", ["mmoe", "shared_bottom"])
def test_export_parity_at_batch_1_7_1000(kind: str, tmp_path: Path) -> None:
    model = _models()[kind]
    numeric, categorical = _inputs(1000, seed=1)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, numeric, categorical)
    worst = parity_max_abs_diff(model, path, numeric, categorical)
    assert worst <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # one file, no side .data
    session = ort.InferenceSession(str(path))
    (logits,) = session.run(["logits"], {"numeric": numeric[:3], "categorical": np.zeros((3, 2), np.int64)})
    assert logits.shape == (3, TASKS) and np.isfinite(logits).all()  # OOV rows score
