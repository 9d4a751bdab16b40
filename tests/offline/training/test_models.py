"""MMoE and shared-bottom rankers: the ONNX contract, baked-in normalisation, export parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from app.offline.training.models.mmoe import MMoERanker
from app.offline.training.models.ple import PLERanker
from app.offline.training.models.shared_bottom import MultiTaskRanker
from app.offline.training.onnx_export import export_onnx, parity_max_abs_diff

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
        "ple": PLERanker(levels=2, shared_experts=2, task_experts=1, expert_hidden=[16], tower_hidden=[8], **common),
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


def test_ple_task_output_ignores_other_tasks_private_experts_on_the_last_level() -> None:
    model = _models()["ple"]
    numeric, categorical = _inputs(4)
    n, c = torch.from_numpy(numeric), torch.from_numpy(categorical)
    before = model(n, c).detach()
    last = model.levels[-1]
    with torch.no_grad():
        for parameter in last.own[0].parameters():  # task 0's private experts on the last level
            parameter.mul_(3.0)
    after = model(n, c).detach()
    assert not torch.allclose(before[:, 0], after[:, 0])
    torch.testing.assert_close(before[:, 1:], after[:, 1:])


@pytest.mark.parametrize("kind", ["mmoe", "shared_bottom", "ple"])
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


@pytest.mark.parametrize(
    ("kind", "cls"), [("shared_bottom", MultiTaskRanker), ("mmoe", MMoERanker), ("ple", PLERanker)]
)
def test_spec_model_kind_builds_that_architecture(kind: str, cls: type) -> None:
    from app.offline.training.encoding import FittedEncoding
    from app.offline.training.run_folder import build_model
    from app.offline.training.spec import TrainSpec
    from tests.offline.conftest import tiny_spec

    spec = TrainSpec.model_validate(tiny_spec(model={"kind": kind, "experts": 2, "levels": 2}))
    fitted = FittedEncoding(
        vocabularies={name: ["a", "b"] for name in spec.dataset.categorical},
        numeric_fill=[0.0] * len(spec.dataset.numeric),
        numeric_mean=[0.0] * len(spec.dataset.numeric),
        numeric_std=[1.0] * len(spec.dataset.numeric),
        valid_start=1.0,
        test_start=2.0,
        label_cutoff=3.0,
        time_min=0.0,
        time_max=3.0,
    )
    model = build_model(spec, fitted)
    assert isinstance(model, cls)
    rows = 5
    logits = model(
        torch.zeros(rows, len(spec.dataset.numeric)), torch.zeros(rows, len(spec.dataset.categorical), dtype=torch.long)
    )
    assert logits.shape == (rows, len(spec.dataset.tasks))
