"""Moo-GBT's constrained objective: a LightGBM custom objective with augmented-Lagrangian multipliers.

Problem (Swiggy's Moo-GBT, in the boosting loop): one booster scores s; minimise the primary task's
logloss C_p(s) subject to C_t(s) <= b_t for each constrained task t, where C_t(s) is the logloss of
the *same* score against task t's labels (each over its observed rows, sample-weighted). Each round
the booster fits the gradient and hessian of

    C_p(s) + sum_t lambda_t C_t(s) + sum_t mu_t / 2 * max(0, C_t(s) - b_t)^2,

scaled by the primary task's total weight (so that an unconstrained run takes LightGBM's own binary
steps); the penalty's factor max(0, C_t - b_t) is taken on the training rows and held constant within
the round. Every `dual_every` rounds the multipliers take a projected dual ascent step on the
validation split, lambda_t <- max(0, lambda_t + rho_t (C_t^valid - b_t)) (the networks' rule in
`app.offline.training.constraints`: a met constraint lowers lambda_t instead of resetting it to 0).
`DualTrajectory` records lambda_t and the validation C_t and C_p at every round, for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from app.offline.training.constraints import dual_update
from app.offline.training.spec import ConstraintSpec

__all__ = ["DualTrajectory", "MooObjective", "logloss", "sigmoid"]

F64 = npt.NDArray[np.float64]


def sigmoid(z: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for any z
    return out


def logloss(z: F64, y: F64, w: F64) -> float:
    """Weighted mean logloss of raw scores `z` against labels `y`; rows with w = 0 are ignored."""
    total = float(w.sum())
    if total <= 0:
        return float("nan")
    losses = np.logaddexp(0.0, z) - y * z  # -log sigmoid(z) for y=1, -log(1 - sigmoid(z)) for y=0
    return float((w * losses).sum() / total)


@dataclass
class MooObjective:
    """The primary booster's custom objective over its training rows (label/weight arrays per task).

    `weights[i]` is sample weight x observed mask (0 = the label does not count); index 0 is the
    primary task, 1.. the constraints in order.
    """

    labels: Sequence[F64]
    weights: Sequence[F64]
    constraints: Sequence[ConstraintSpec]
    lambdas: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lambdas:
            self.lambdas = [0.0] * len(self.constraints)
        totals = [float(w.sum()) for w in self.weights]
        if totals[0] <= 0:
            raise ValueError("the primary task has no observed training row")
        # C_t is a mean over task t's rows; scaled by W_primary so all terms are sums like LightGBM's.
        self._scale = [totals[0] / t if t > 0 else 0.0 for t in totals[1:]]

    def __deepcopy__(self, _memo: dict[int, Any]) -> MooObjective:
        # `lightgbm.train` deep-copies its params, objective included: the booster would then train
        # with a copy whose multipliers stay at their initial value while `dual_step` moves ours.
        # The multipliers are state shared between the loop and the booster, so a copy is this object.
        return self

    def coefficients(self, z: F64) -> list[float]:
        """lambda_t + mu_t max(0, C_t(z) - b_t), times the scale, for the current training scores."""
        out = []
        for i, c in enumerate(self.constraints):
            penalty = 0.0
            if c.penalty > 0:
                loss = logloss(z, self.labels[i + 1], self.weights[i + 1])
                penalty = c.penalty * max(0.0, loss - c.max_loss) if np.isfinite(loss) else 0.0
            out.append((self.lambdas[i] + penalty) * self._scale[i])
        return out

    def __call__(self, preds: F64, _dataset: Any) -> tuple[F64, F64]:
        """(gradient, hessian) per row, LightGBM's custom-objective signature."""
        z = np.asarray(preds, dtype=np.float64)
        p = sigmoid(z)
        curvature = p * (1.0 - p)
        grad = self.weights[0] * (p - self.labels[0])
        hess = self.weights[0] * curvature
        for i, coefficient in enumerate(self.coefficients(z)):
            if coefficient:
                grad = grad + coefficient * self.weights[i + 1] * (p - self.labels[i + 1])
                hess = hess + coefficient * self.weights[i + 1] * curvature
        return grad, hess

    def dual_step(self, valid_losses: Sequence[float]) -> None:
        """One projected dual ascent step from the constraints' validation losses."""
        self.lambdas = [
            dual_update(lam, loss, c.max_loss, c.rho) if np.isfinite(loss) else lam
            for lam, loss, c in zip(self.lambdas, valid_losses, self.constraints, strict=True)
        ]


@dataclass
class DualTrajectory:
    """Per round (1-based): lambda_t in force, C_t and C_primary on validation."""

    primary: str
    tasks: Sequence[str]
    bounds: Sequence[float]
    # infeasible bounds: rounds within tolerance x sum of bounds of the least violation count as least
    # violating (`training.selection.infeasible_tolerance`, the networks' rule)
    tolerance: float = 0.0
    rounds: list[int] = field(default_factory=list)
    primary_loss: list[float] = field(default_factory=list)
    losses: list[list[float]] = field(default_factory=list)  # [round][constraint]
    lambdas: list[list[float]] = field(default_factory=list)

    def record(self, round_: int, primary_loss: float, losses: Sequence[float], lambdas: Sequence[float]) -> None:
        self.rounds.append(round_)
        self.primary_loss.append(primary_loss)
        self.losses.append(list(losses))
        self.lambdas.append(list(lambdas))

    def violation(self, index: int) -> float:
        return float(sum(max(0.0, v - b) for v, b in zip(self.losses[index], self.bounds, strict=True)))

    def select(self) -> int:
        """Index of the selected round: the lowest primary loss among rounds meeting every bound on
        validation, else among the least violating (violation within `tolerance` x the sum of the
        bounds of the smallest); the earliest on ties."""
        violations = [self.violation(i) for i in range(len(self.rounds))]
        smallest = min(violations)
        slack = 0.0 if smallest == 0.0 else self.tolerance * float(sum(self.bounds))
        candidates = [i for i, v in enumerate(violations) if v <= smallest + slack]
        return min(candidates, key=lambda i: self.primary_loss[i])

    def infeasible(self) -> list[dict[str, Any]]:
        """Bounds no round met, in the networks' shape (`report.json` → `infeasible_constraints`)."""
        out: list[dict[str, Any]] = []
        for i, (task, bound) in enumerate(zip(self.tasks, self.bounds, strict=True)):
            losses = [(row[i], r) for row, r in zip(self.losses, self.rounds, strict=True) if np.isfinite(row[i])]
            if not losses or min(losses)[0] <= bound:
                continue
            best, at = min(losses)
            out.append(
                {
                    "task": task,
                    "bound": bound,
                    "best_reachable": best,
                    "best_epoch": at,
                    "warning": (
                        f"constraint on {task!r} is infeasible: the {self.primary} score's validation logloss on "
                        f"{task!r} labels <= {bound:g} was never reached (best {best:.4f} at round {at}); selection "
                        f"fell back to the lowest {self.primary} loss among the least-violating rounds. Raise "
                        f"training.constraints max_loss for {task!r} to at least {best:.4f}."
                    ),
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        best = self.select() if self.rounds else None
        return {
            "primary": self.primary,
            "rounds": self.rounds,
            "primary_valid_loss": self.primary_loss,
            "constraints": {
                task: {
                    "bound": bound,
                    "valid_loss": [row[i] for row in self.losses],
                    "lambda": [row[i] for row in self.lambdas],
                    "best_reachable": min((row[i] for row in self.losses), default=float("nan")),
                }
                for i, (task, bound) in enumerate(zip(self.tasks, self.bounds, strict=True))
            },
            "selected_round": self.rounds[best] if best is not None else None,
            "feasible": best is not None and self.violation(best) == 0.0,
        }
