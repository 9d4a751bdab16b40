"""Moo-GBT's constrained objective: the unconstrained GBT violates a reachable bound, the constrained one meets it.

Data: the tiny synthetic demo log (8000 impressions, seed 11). Primary task `click`; the constraint
bounds the logloss of the click booster's score against the `purchase` labels on the validation split
(Moo-GBT's C_t(s)): about 0.080 unconstrained; 0.07 is reachable, 0.03 is not.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.offline.training.batches import InMemoryLog
from app.offline.training.encoding import fit_encoding
from app.offline.training.gbt.fit import SplitArrays
from app.offline.training.gbt.moo import DualTrajectory, MooObjective, logloss
from app.offline.training.gbt.ranker import GBTRanker
from app.offline.training.spec import ConstraintSpec, TrainSpec
from app.offline.training.tabular import TableSource
from app.offline.training.train import RunResult, train_spec
from tests.offline.conftest import tiny_spec

BOUND = 0.07


def _spec(constraints: list[dict[str, Any]]) -> TrainSpec:
    spec = tiny_spec(compare_losses=[], model={"kind": "gbt", "gbt": {"rounds": 300, "primary": "click"}})
    spec["training"].pop("losses", None)
    spec["training"]["constraints"] = constraints
    return TrainSpec.model_validate(spec)


def _click_score_on_purchase(run: RunResult, data: Path) -> float:
    """Validation logloss of the click booster's score against the purchase labels, recomputed."""
    spec = TrainSpec.model_validate(json.loads((run.run / "run.json").read_text())["spec"])
    source = TableSource.open(data, spec.dataset)
    valid = SplitArrays.load(InMemoryLog.load(source, fit_encoding(source)), "valid")
    model = GBTRanker.load(run.run / "gbt", spec.task_names())
    n = len(spec.dataset.numeric)
    z = model.raw_scores(valid.x[:, :n], valid.x[:, n:].astype(np.int64))[:, 0]
    return logloss(z, valid.labels[:, 1], valid.observed(1))


@pytest.fixture(scope="module")
def runs(tiny_log: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    root = tmp_path_factory.mktemp("moo")
    return {
        "unconstrained": train_spec(_spec([]), tiny_log, root / "plain", show_progress=False),
        "constrained": train_spec(
            _spec([{"task": "purchase", "max_loss": BOUND, "rho": 20.0}]), tiny_log, root / "moo", show_progress=False
        ),
    }


def test_constrained_gbt_meets_a_bound_the_unconstrained_one_violates(
    runs: dict[str, RunResult], tiny_log: Path
) -> None:
    plain = _click_score_on_purchase(runs["unconstrained"], tiny_log)
    bounded = _click_score_on_purchase(runs["constrained"], tiny_log)
    assert plain > BOUND >= bounded
    dual = runs["constrained"].report["gbt"]["dual"]
    assert dual["feasible"] and dual["primary"] == "click"
    at = dual["rounds"].index(dual["selected_round"])
    assert dual["constraints"]["purchase"]["valid_loss"][at] == pytest.approx(bounded, abs=1e-6)
    # The primary task still learns: its test AUC stays well above chance, reported for both models.
    for run in runs.values():
        assert run.report["tasks"]["click"]["overall"]["auc"] > 0.65
    print(  # the constrained-vs-unconstrained table of the closing note (pytest -s)
        {name: (round(_click_score_on_purchase(run, tiny_log), 4), run.report["tasks"]["click"]["overall"])
         for name, run in runs.items()}
    )


def test_report_holds_the_dual_trajectory_and_its_plot(runs: dict[str, RunResult]) -> None:
    run = runs["constrained"]
    dual = json.loads((run.run / "report.json").read_text())["gbt"]["dual"]
    lambdas = dual["constraints"]["purchase"]["lambda"]
    assert len(lambdas) == len(dual["rounds"]) == len(dual["primary_valid_loss"]) >= dual["selected_round"]
    assert lambdas[0] == 0.0 and max(lambdas) > 0 and min(lambdas) >= 0
    # Multipliers change only every `dual_every` (10) rounds.
    changes = [r for r, a, b in zip(dual["rounds"][1:], lambdas, lambdas[1:], strict=False) if a != b]
    assert changes and all(r % 10 == 1 for r in changes)
    png = run.run / "dual_trajectory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (run.run / "report.md").read_text()
    assert "Constrained objective (primary task click)" in markdown and "| purchase | 0.0700 |" in markdown
    assert json.loads((run.run / "report.json").read_text())["constraints"][0]["task"] == "purchase"


def test_an_unreachable_bound_is_reported_with_the_best_reachable_value(tiny_log: Path, tmp_path: Path) -> None:
    spec = _spec([{"task": "purchase", "max_loss": 0.03, "rho": 50.0}])
    spec = spec.model_copy(
        update={"training": spec.training.model_copy(
            update={"model": spec.training.model.model_copy(
                update={"gbt": spec.training.model.gbt.model_copy(update={"rounds": 40})}
            )}
        )}
    )
    run = train_spec(spec, tiny_log, tmp_path / "run", show_progress=False)
    dual = run.report["gbt"]["dual"]
    assert not dual["feasible"] and dual["constraints"]["purchase"]["best_reachable"] > 0.03
    assert len(dual["rounds"]) == 40  # never stopped early while infeasible
    markdown = (run.run / "report.md").read_text()
    assert "no round met every bound on validation" in markdown
    (row,) = run.report["infeasible_constraints"]
    assert row["task"] == "purchase" and row["bound"] == 0.03
    assert row["best_reachable"] == pytest.approx(dual["constraints"]["purchase"]["best_reachable"])
    assert "**warning**: constraint on 'purchase' is infeasible" in markdown


def test_an_infeasible_trajectory_selects_the_best_primary_among_the_least_violating() -> None:
    trajectory = DualTrajectory("click", ["purchase"], [0.10], tolerance=0.01)
    # violations 0.0050, 0.0055, 0.0200: rounds 1 and 2 are within 0.01 x 0.10 of the least
    for r, (primary, loss) in enumerate([(0.30, 0.1050), (0.25, 0.1055), (0.20, 0.1200)], start=1):
        trajectory.record(r, primary, [loss], [0.0])
    assert trajectory.rounds[trajectory.select()] == 2
    assert DualTrajectory("click", ["purchase"], [0.10], tolerance=0.0, rounds=[1, 2], primary_loss=[0.3, 0.25],
                          losses=[[0.105], [0.1055]], lambdas=[[0.0], [0.0]]).select() == 0
    (row,) = trajectory.infeasible()
    assert row["best_reachable"] == 0.1050 and row["best_epoch"] == 1 and "at least 0.1050" in row["warning"]
    trajectory.record(4, 0.5, [0.09], [0.0])
    assert trajectory.infeasible() == [] and trajectory.rounds[trajectory.select()] == 4  # feasible beats all


def test_objective_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=50)
    y0, y1 = (rng.random(50) < 0.3).astype(float), (rng.random(50) < 0.1).astype(float)
    w0, w1 = np.ones(50), (rng.random(50) < 0.7).astype(float)
    objective = MooObjective(
        [y0, y1], [w0, w1], [ConstraintSpec(task="b", max_loss=0.1, penalty=0.0)], lambdas=[0.7]
    )
    grad, hess = objective(z, None)

    def total(v: np.ndarray) -> float:  # W_primary * (C_p + lambda C_t)
        return float(w0.sum() * (logloss(v, y0, w0) + 0.7 * logloss(v, y1, w1)))

    eps = 1e-6
    numeric = np.array([(total(z + eps * e) - total(z - eps * e)) / (2 * eps) for e in np.eye(50)])
    assert np.allclose(grad, numeric, atol=1e-6) and (hess > 0).all()


def test_constrained_booster_exports_with_its_offset_within_1e_5(runs: dict[str, RunResult], tmp_path: Path) -> None:
    """A custom-objective booster (no objective line, a base-rate offset) exports and passes parity."""
    from app.offline.training.bundle import export_run

    result = export_run(runs["constrained"].run, tmp_path / "store" / "moo" / "1")
    assert result.manifest.parity.max_abs_diff <= 1e-5 == result.manifest.parity.tolerance
    offsets = json.loads((runs["constrained"].run / "gbt" / "offsets.json").read_text())
    assert offsets["click"] < -1.0 and offsets["purchase"] == 0.0  # click's base-rate logit; others built in


def test_the_multipliers_reach_the_booster(runs: dict[str, RunResult], tiny_log: Path, tmp_path: Path) -> None:
    """`lightgbm.train` deep-copies its params: a copied objective would train with lambda = 0 throughout
    (the dual steps moving only the original), so rho would change the trajectory's lambdas but never the
    trees, and "meeting the bound" would only be stopping early. Here no round of the unconstrained
    booster meets the bound, and a smaller dual step gives a different booster."""
    objective = MooObjective([np.zeros(3)], [np.ones(3)], [])
    assert copy.deepcopy({"objective": objective})["objective"] is objective
    spec = TrainSpec.model_validate(json.loads((runs["unconstrained"].run / "run.json").read_text())["spec"])
    source = TableSource.open(tiny_log, spec.dataset)
    valid = SplitArrays.load(InMemoryLog.load(source, fit_encoding(source)), "valid")
    booster = GBTRanker.load(runs["unconstrained"].run / "gbt", spec.task_names()).boosters[0]
    rounds = range(1, booster.current_iteration() + 1)
    losses = [logloss(booster.predict(valid.x, raw_score=True, num_iteration=k), valid.labels[:, 1], valid.observed(1))
              for k in rounds]
    assert min(losses) > BOUND  # truncating the unconstrained booster never meets the bound
    slower = train_spec(_spec([{"task": "purchase", "max_loss": BOUND, "rho": 5.0}]), tiny_log, tmp_path / "rho5",
                        show_progress=False)
    trees = [(run.run / "gbt" / "00_click.txt").read_text().split("end of trees")[0] for run in
             (runs["constrained"], slower)]
    assert trees[0] != trees[1]
