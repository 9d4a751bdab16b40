"""Tuners that split an importance measure across tasks in target fractions (scikit-learn shaped).

- `NdcgGapTuner`: the NDCG gap of task t is 1 - NDCG of the ranking with w_t set to 0, gains = the
  full utility (per group, averaged; `sklearn.metrics.ndcg_score([U], [U - w_t s_t p_t])`). A task
  with a larger gap matters more to the ranking.
- `RegretTuner`: the regret of task t is 1 - NDCG of the blended ranking against task t's own
  ideal ranking (gains = task t's predictions, or its labels). A task with a smaller regret is
  served better.

Both return weights >= 0 summing to 1 over the tasks; a negative task (hide) enters the utility as
``-w_t p_t``. With `epsilon` they tune the exponents of a product-form utility (``ranking.form: product``) in
log space (`TaskMatrix`), and weights.json records ``form: product`` and the epsilon. `to_dict()` is the
content of weights.json.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from app.offline.tuning.fractions import FractionMatch, match_fractions
from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.objectives import TaskMatrix, task_gains

__all__ = ["NdcgGapTuner", "RegretTuner", "check_targets"]

Float = npt.NDArray[np.float64]


def check_targets(targets: Mapping[str, float]) -> dict[str, float]:
    """Targets are fractions > 0 that sum to 1 (within 0.01; renormalised exactly)."""
    if len(targets) < 2:
        raise ValueError("give a target for at least two tasks (TASK=FRACTION, ...)")
    bad = {k: v for k, v in targets.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"target fractions must be > 0: {bad}")
    total = sum(targets.values())
    if abs(total - 1.0) > 0.01:
        raise ValueError(f"target fractions must sum to 1, they sum to {total:.4g}")
    return {k: v / total for k, v in targets.items()}


class _FractionTuner(ABC):
    objective = ""
    quantity = ""
    increasing = True

    def __init__(
        self,
        *,
        targets: Mapping[str, float],
        negative: Collection[str] = (),
        k: int | None = None,
        eta: float = 1.0,
        max_iter: int = 15,
        newton_iter: int = 6,
        polish_maxfev: int = 100,
        tol: float = 0.002,
        epsilon: float | None = None,
        show_progress: bool = False,
    ) -> None:
        self.targets = targets
        self.epsilon = epsilon
        self.negative = negative
        self.k = k
        self.eta = eta
        self.max_iter = max_iter
        self.newton_iter = newton_iter
        self.polish_maxfev = polish_maxfev
        self.tol = tol
        self.show_progress = show_progress

    @abstractmethod
    def _evaluator(self, log: CandidateLog, matrix: TaskMatrix) -> Any:
        """The objective each subclass targets: weights -> per-task fractions."""

    def fit(self, log: CandidateLog) -> Self:
        targets = check_targets(self.targets)
        tasks = list(targets)
        matrix = TaskMatrix.from_log(log, tasks, self.negative, epsilon=self.epsilon)
        start = time.perf_counter()
        match: FractionMatch = match_fractions(
            self._evaluator(log, matrix), np.array([targets[t] for t in tasks]), increasing=self.increasing,
            eta=self.eta, max_iter=self.max_iter, newton_iter=self.newton_iter, polish_maxfev=self.polish_maxfev,
            tol=self.tol,
            show_progress=self.show_progress, label=f"tune {self.objective}",
        )
        self.seconds_ = time.perf_counter() - start
        self.tasks_ = tuple(tasks)
        self.targets_ = targets
        self.weights_ = dict(zip(tasks, map(float, match.weights), strict=True))
        self.values_ = dict(zip(tasks, map(float, match.values), strict=True))
        self.achieved_ = dict(zip(tasks, map(float, match.fractions), strict=True))
        self.error_ = match.error
        self.n_evaluations_ = match.evaluations
        self.fractions_seen_ = {t: (float(lo), float(hi))
                                for t, lo, hi in zip(tasks, match.seen_low, match.seen_high, strict=True)}
        self.history_ = match.history
        self.n_groups_ = log.n_groups
        self.log_path_ = log.path
        return self

    def signed_weights(self) -> dict[str, float]:
        """The utility weights with their sign (a negative task's weight is <= 0)."""
        return {t: -w if t in self.negative else w for t, w in self.weights_.items()}

    def to_dict(self) -> dict[str, Any]:
        """weights.json: weights, targets, achieved fractions, their absolute error sum, and context."""
        form = {} if self.epsilon is None else {"form": "product", "epsilon": self.epsilon}
        return {
            **form,
            "objective": self.objective,
            "weights": self.weights_,
            "signed_weights": self.signed_weights(),
            "negative_tasks": sorted(t for t in self.tasks_ if t in self.negative),
            "targets": self.targets_,
            "achieved": self.achieved_,
            "abs_error_sum": self.error_,
            "fractions_seen": {t: list(r) for t, r in self.fractions_seen_.items()},
            self.quantity: self.values_,
            "k": self.k,
            "log": self.log_path_,
            "groups": self.n_groups_,
            "evaluations": self.n_evaluations_,
            "seconds": round(self.seconds_, 3),
        }


class NdcgGapTuner(_FractionTuner):
    """Weights whose per-task NDCG gaps split in the target fractions."""

    objective = "ndcg_gap"
    quantity = "ndcg_gaps"
    increasing = True

    def _evaluator(self, log: CandidateLog, matrix: TaskMatrix) -> Any:
        return lambda w: matrix.ndcg_gaps(w, self.k)


class RegretTuner(_FractionTuner):
    """Weights whose per-task regrets (1 - NDCG against the task's own ideal) split in the targets."""

    objective = "regret"
    quantity = "regrets"
    increasing = False

    def __init__(self, *, targets: Mapping[str, float], labels: bool = False, **kwargs: Any) -> None:
        super().__init__(targets=targets, **kwargs)
        self.labels = labels

    def _evaluator(self, log: CandidateLog, matrix: TaskMatrix) -> Any:
        gains = task_gains(log, matrix, labels=self.labels)
        ideal = matrix.ideal_dcgs(gains, self.k)
        return lambda w: matrix.regrets(w, gains, ideal, self.k)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "gains": "labels" if self.labels else "predictions"}
