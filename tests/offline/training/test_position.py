"""Position-aware training: a training-only tower, neutralised at export, that recovers the true relevance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.artifacts.loading import load_manifest
from app.offline.synthetic import generator as syn
from app.offline.synthetic.position_check import position_spec, run_check
from app.offline.training.bundle import export_run
from app.offline.training.models.position import PositionAware, PositionTower, neutralise
from app.offline.training.models.shared_bottom import MultiTaskRanker
from app.offline.training.models.snapshots import PerTaskSnapshots
from app.offline.training.spec import TrainSpec


def _spec(**changes: Any) -> dict[str, Any]:
    data = position_spec(debiased=True).model_dump(mode="json")
    for path, value in changes.items():
        target = data
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    return data


def test_the_position_column_may_not_also_be_a_feature() -> None:
    data = _spec(**{"dataset.categorical": [*syn.CATEGORICAL, "position"]})
    with pytest.raises(ValueError, match=r"dataset.position.column 'position' is also a feature"):
        TrainSpec.model_validate(data)


def test_the_gbt_family_refuses_a_position_input_naming_the_field() -> None:
    data = _spec(**{"training.model": {"kind": "gbt"}})
    with pytest.raises(ValueError, match=r"dataset.position: model.kind gbt cannot neutralise a position input"):
        TrainSpec.model_validate(data)


@pytest.mark.parametrize(("field", "value"), [("buckets", 1), ("dropout", 1.0)])
def test_position_settings_are_bounded(field: str, value: float) -> None:
    data = _spec(**{f"dataset.position.{field}": value})
    with pytest.raises(ValueError, match=f"dataset.position.{field}"):
        TrainSpec.model_validate(data)


def test_the_tower_adds_only_in_training_and_neutralise_drops_it() -> None:
    torch.manual_seed(0)
    ranker = MultiTaskRanker(numeric_mean=[0.0], numeric_std=[1.0], vocabulary_sizes=[2], n_tasks=2, hidden=(4,))
    tower = PositionTower(buckets=3, n_tasks=2)
    with torch.no_grad():
        tower.bias.weight.copy_(torch.tensor([[0.0, 0.0], [-0.1, 0.0], [-0.2, 0.0], [0.0, 0.0]]))
    model = PositionAware(ranker, tower).eval()
    numeric, categorical = torch.zeros(3, 1), torch.ones(3, 1, dtype=torch.int64)
    plain = ranker(numeric, categorical)
    biased = model(numeric, categorical, torch.tensor([0, 1, 2]))
    assert torch.allclose(biased[:, 0] - plain[:, 0], torch.tensor([0.0, -1.0, -2.0]))  # scale 10
    assert torch.equal(model(numeric, categorical), plain)
    assert neutralise(model) is ranker
    snapshots = neutralise(PerTaskSnapshots([model, PositionAware(ranker, tower)], [0, 1]))
    assert isinstance(snapshots, PerTaskSnapshots) and all(n is ranker for n in snapshots.networks)


def test_position_bias_option_leaves_the_default_log_unchanged() -> None:
    plain, explicit = syn.generate_log(2000, seed=1), syn.generate_log(2000, seed=1, position_bias=0.0)
    assert np.array_equal(plain.labels, explicit.labels) and plain.position is None
    biased = syn.generate_log(2000, seed=1, position_bias=1.0)
    assert biased.position is not None and biased.true_click is not None
    per_group = biased.position.reshape(-1, 20)
    assert (np.sort(per_group, axis=1) == np.arange(20)).all()  # each request shows positions 0..19 once
    # The logging ranker put popular items on top: position and popularity are strongly related.
    popularity = np.log(biased.numeric[:, syn.NUMERIC.index("item_popularity")])
    assert np.corrcoef(biased.position, popularity)[0, 1] < -0.5
    assert np.array_equal(plain.labels[:, 1:], biased.labels[:, 1:])  # only clicks carry the position bias


@pytest.mark.slow
def test_the_debiased_model_recovers_the_true_relevance_better_and_exports_without_position(tmp_path: Path) -> None:
    result = run_check(tmp_path, rows=40_000, bias=1.0, epochs=3)
    plain, debiased = result["plain"], result["debiased"]
    assert debiased["ndcg@10"] > plain["ndcg@10"] + 0.01
    assert debiased["kendall_tau"] > plain["kendall_tau"] + 0.01
    assert debiased["popularity_corr"] < plain["popularity_corr"]
    bundle = export_run(tmp_path / "debiased", tmp_path / "store" / "debiased" / "1").bundle_dir
    manifest = load_manifest(bundle)
    assert manifest.training_only_inputs == ["position"]
    names = [f.name for f in manifest.features.numeric] + manifest.features.categorical_names()
    assert "position" not in names
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["numeric", "categorical"]
    plain_manifest = load_manifest(export_run(tmp_path / "plain", tmp_path / "store" / "plain" / "1").bundle_dir)
    assert plain_manifest.training_only_inputs is None
