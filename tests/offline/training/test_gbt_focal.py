"""A focal-loss task does not degrade another task: with one booster per task, exactly.

Same tiny demo log, same seed, GBT family; run A trains every task with BCE, run B trains purchase
with focal loss (gamma 2). Per-task selection (each booster stops on and keeps its own plain
validation logloss) means click's selected iteration, its booster and its logloss are *bit-equal*
in both runs, while purchase's booster changes. (The networks share a trunk, so there the other
task's trajectory moves a little; see tests/offline/training/test_selection.py and docs/training.md.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.offline.training.bundle import export_run
from app.offline.training.gbt.focal import HESSIAN_FLOOR, FocalObjective
from app.offline.training.losses import focal_loss
from app.offline.training.run_folder import RunFolder
from app.offline.training.spec import TrainSpec
from app.offline.training.train import RunResult, train_spec
from tests.offline.conftest import tiny_spec


def _run(tiny_log: Path, root: Path, losses: dict[str, object]) -> RunResult:
    spec = tiny_spec(compare_losses=[], losses=losses, model={"kind": "gbt", "gbt": {"rounds": 80}})
    return train_spec(TrainSpec.model_validate(spec), tiny_log, root, show_progress=False)


@pytest.fixture(scope="module")
def runs(tiny_log: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    root = tmp_path_factory.mktemp("focal")
    return {
        "plain": _run(tiny_log, root / "plain", {}),
        "focal": _run(tiny_log, root / "focal", {"purchase": {"kind": "focal", "gamma": 2.0}}),
    }


def test_the_other_tasks_selected_iteration_and_logloss_are_unchanged(runs: dict[str, RunResult]) -> None:
    plain, focal = runs["plain"].report, runs["focal"].report
    for task in ("click", "hide", "report"):
        assert plain["gbt"]["tasks"][task] == focal["gbt"]["tasks"][task]  # selected iteration, rounds, rows
        assert plain["task_epochs"][task] == focal["task_epochs"][task]
        assert plain["tasks"][task]["overall"] == focal["tasks"][task]["overall"]  # test logloss, AUC, ... (==)
        curve = [h["valid_loss"][task] for h in plain["history"]]
        assert curve == [h["valid_loss"][task] for h in focal["history"]]
    plain_files = sorted((runs["plain"].run / "gbt").glob("*.txt"))
    focal_files = sorted((runs["focal"].run / "gbt").glob("*.txt"))
    changed = [a.name for a, b in zip(plain_files, focal_files, strict=True) if a.read_text() != b.read_text()]
    assert changed == ["01_purchase.txt"]  # only the focal task's booster differs
    assert plain["tasks"]["purchase"]["overall"]["logloss"] != focal["tasks"]["purchase"]["overall"]["logloss"]


def test_the_focal_task_is_selected_on_its_plain_logloss_and_exports(
    runs: dict[str, RunResult], tmp_path: Path
) -> None:
    run = runs["focal"]
    offsets = RunFolder(run.run).load()[2].offsets  # type: ignore[attr-defined]
    assert offsets[1] < -3.0 and offsets[0] == 0.0  # purchase starts from its base-rate logit
    result = export_run(run.run, tmp_path / "store" / "focal" / "1")
    assert result.manifest.parity.max_abs_diff <= 1e-5


def test_focal_objective_matches_the_networks_loss_and_its_derivatives() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=300) * 3
    y = (rng.random(300) < 0.3).astype(float)
    w = rng.random(300)
    for gamma, alpha in ((0.0, None), (2.0, None), (2.0, 0.25), (0.5, 0.7)):
        objective = FocalObjective(y, w, gamma, alpha)
        reference = focal_loss(torch.tensor(z), torch.tensor(y), gamma, alpha).numpy()
        np.testing.assert_allclose(objective.element_loss(z), reference, atol=1e-12)
        grad, hess = objective(z, None)
        eps = 1e-5
        numeric_grad = w * (objective.element_loss(z + eps) - objective.element_loss(z - eps)) / (2 * eps)
        numeric_hess = (objective(z + eps, None)[0] - objective(z - eps, None)[0]) / (2 * eps)
        np.testing.assert_allclose(grad, numeric_grad, atol=1e-8)
        p = 1 / (1 + np.exp(-z))
        p_t = np.where(y > 0, p, 1 - p)
        a_t = 1.0 if alpha is None else np.where(y > 0, alpha, 1 - alpha)
        floor = w * np.maximum(a_t * (1 - p_t) ** gamma * p_t * (1 - p_t), HESSIAN_FLOOR)
        np.testing.assert_allclose(hess, np.maximum(numeric_hess, floor), atol=1e-8)
        assert (hess > 0).all()
        if gamma == 0.0 and alpha is None:  # BCE: LightGBM's own binary gradient and hessian
            np.testing.assert_allclose(grad, w * (p - y), atol=1e-12)
            np.testing.assert_allclose(hess, w * p * (1 - p), atol=1e-12)


def test_a_task_selected_on_auc_keeps_its_best_auc_round(tiny_log: Path, tmp_path: Path) -> None:
    """`training.selection.metrics: {click: auc}` with kind gbt: click stops on and keeps its best validation
    AUC (history `metric` = 1 - AUC); the other tasks keep their logloss; `combine: sum` is refused."""
    spec = tiny_spec(compare_losses=[], model={"kind": "gbt", "gbt": {"rounds": 80, "early_stopping_rounds": 20}},
                     selection={"metrics": {"click": "auc"}})
    spec["training"].pop("losses", None)
    report = train_spec(TrainSpec.model_validate(spec), tiny_log, tmp_path / "run", show_progress=False).report
    gbt = report["gbt"]["tasks"]
    assert gbt["click"]["selection_metric"] == "auc" and gbt["hide"]["selection_metric"] == "logloss"
    run = RunFolder(tmp_path / "run")
    booster = run.load()[2].boosters[0]  # type: ignore[attr-defined]
    assert booster.current_iteration() == gbt["click"]["best_iteration"]
    history = report["history"]  # every `dual_every` rounds: the metric is 1 - AUC for click
    assert all(0.0 < h["metric"]["click"] < 0.5 for h in history)
    assert all(h["metric"]["hide"] == h["valid_loss"]["hide"] for h in history)
    spec["training"]["selection"]["combine"] = "sum"
    with pytest.raises(ValueError, match=r"model\.kind gbt trains one booster per task"):
        TrainSpec.model_validate(spec)
