"""The augmented-Lagrangian dual update: projected, never reset, moves with the violation."""

from __future__ import annotations

from pathlib import Path

import torch

from app.offline.training.constraints import DualState, dual_update
from app.offline.training.spec import ConstraintSpec


def test_dual_update_increases_while_violated() -> None:
    lam = dual_update(0.0, loss=0.30, bound=0.20, rho=2.0)
    assert abs(lam - 0.2) < 1e-12
    assert dual_update(lam, loss=0.25, bound=0.20, rho=2.0) > lam


def test_dual_update_decreases_but_is_not_reset_when_satisfied() -> None:
    lam = dual_update(1.0, loss=0.18, bound=0.20, rho=2.0)
    assert 0 < lam < 1.0
    assert abs(lam - (1.0 - 2.0 * 0.02)) < 1e-12  # 0.96, not 0 as in Moo-GBT


def test_dual_update_is_projected_onto_non_negative_values() -> None:
    assert dual_update(0.05, loss=0.0, bound=0.20, rho=2.0) == 0.0
    assert dual_update(0.0, loss=0.10, bound=0.20, rho=1.0) == 0.0


def test_dual_state_steps_each_constraint_on_its_task() -> None:
    constraints = [ConstraintSpec(task="hide", max_loss=0.05, rho=10.0), ConstraintSpec(task="click", max_loss=0.3)]
    state = DualState(constraints, task_index=[2, 0])
    state.step([0.25, 0.9, 0.07])  # click satisfied, hide violated by 0.02
    assert state.lambdas[0] > 0 and state.lambdas[1] == 0.0
    assert abs(state.lambdas[0] - 0.2) < 1e-9
    assert state.violations([0.25, 0.9, 0.07]) == [0.07 - 0.05, 0.0]


def test_penalty_adds_lambda_times_loss_and_the_quadratic_term() -> None:
    constraints = [ConstraintSpec(task="hide", max_loss=0.1, penalty=4.0)]
    state = DualState(constraints, task_index=[1], lambdas=[0.5])
    losses = torch.tensor([0.7, 0.3], requires_grad=True)
    penalty = state.penalty(losses)
    expected = 0.5 * 0.3 + 0.5 * 4.0 * (0.3 - 0.1) ** 2
    assert abs(float(penalty.detach()) - expected) < 1e-6
    penalty.backward()
    assert losses.grad is not None and losses.grad[0] == 0 and losses.grad[1] > 0.5


def test_constrained_training_logs_lambda_and_bound_per_epoch(tiny_log: Path, tmp_path: Path) -> None:
    from app.offline.training.spec import TrainSpec
    from app.offline.training.train import train_spec
    from tests.offline.conftest import tiny_spec

    spec = tiny_spec(
        epochs=3,
        loss_weights={"click": 1.0, "purchase": 1.0, "hide": 0.0, "report": 1.0},
        constraints=[{"task": "hide", "max_loss": 0.2, "rho": 1.0}],
        dual_updates_per_epoch=4,
    )
    report = train_spec(TrainSpec.model_validate(spec), tiny_log, tmp_path / "run", show_progress=False).report
    log = report["constraints"]
    assert [row["epoch"] for row in log] == [1, 2, 3] and {row["task"] for row in log} == {"hide"}
    assert all(row["lambda"] >= 0 and row["bound"] == 0.2 for row in log)
    # hide starts untrained (weight 0, logloss ~ ln 2 > 0.2): the dual variable must have risen and pulled
    # hide under its bound by the last epoch
    assert log[0]["lambda"] > 0
    assert log[-1]["valid_loss"] <= 0.2 and log[-1]["violation"] == 0.0
    assert report["history"][-1]["lambdas"]["hide"] == log[-1]["lambda"]
