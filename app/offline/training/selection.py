"""Which epoch each task keeps, and when training stops: per-task selection that no task's loss option can bend.

Every epoch is scored on the validation split with each task's *selection metric* (the spec's
`training.selection.metrics`, default the task's plain logloss whatever loss it trains with; `auc`
is scored as 1 - AUC so that lower is better everywhere). Two ways to combine tasks:

- ``per_task`` (default): each task keeps its own best epoch (one snapshot per task, deduplicated:
  the exported network holds one copy per distinct selected epoch). A focal or class-weighted task
  whose plain logloss drifts up moves only its own choice; the others keep what they would have kept.
- ``sum``: one epoch for all tasks, the lowest sum_t v_t * metric_t (v_t: `selection.weights`,
  default 1, and 0 for a task whose loss weight is 0, i.e. trained only through its constraint).
  Constraints (validation logloss <= bound) restrict the choice to epochs where they all hold; when
  no epoch meets them, the constraints are *infeasible*: the report gives each bound, the best loss
  reached and its epoch, and the choice falls back to the lowest objective among the least-violating
  epochs (total violation within `infeasible_tolerance * sum of bounds` of the smallest), not to the
  single least-violating epoch whatever its objective.

Stopping: training stops once every task with a finite metric has gone `patience` epochs without
improving its own metric and the choice has not changed for `patience` epochs; a task whose own
metric drifts up (a focal task's plain logloss, say) never stops the others while they improve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.offline.training.spec import ConstraintSpec, SelectionSpec

__all__ = ["EpochScore", "Selector"]


@dataclass(frozen=True)
class EpochScore:
    """One epoch's validation scores, per task in model order: selection metric (lower is better) and plain logloss."""

    epoch: int
    metric: Sequence[float]
    logloss: Sequence[float]


@dataclass
class Selector:
    """Keeps the scored epochs and answers: which epoch per task, which states to keep, stop or not."""

    tasks: Sequence[str]
    selection: SelectionSpec
    weights: Sequence[float]  # per task, for `sum`
    constraints: Sequence[ConstraintSpec]
    constraint_index: Sequence[int]  # model task index of each constraint
    patience: int
    scores: list[EpochScore] = field(default_factory=list)
    _changed_at: int = 0
    _last_choice: dict[str, int] = field(default_factory=dict)

    def add(self, score: EpochScore) -> None:
        """Record an epoch (epochs arrive in order)."""
        self.scores.append(score)
        choice = self.choice()
        if choice != self._last_choice:
            self._last_choice, self._changed_at = choice, score.epoch

    # ---- choice -------------------------------------------------------------------------------
    def choice(self) -> dict[str, int]:
        """Task -> selected epoch (0 before the first epoch)."""
        if not self.scores:
            return dict.fromkeys(self.tasks, 0)
        if self.selection.combine == "per_task":
            return {task: self._task_best(t)[0] for t, task in enumerate(self.tasks)}
        return dict.fromkeys(self.tasks, self._joint_choice())

    def _task_best(self, t: int) -> tuple[int, float]:
        """(epoch, metric) of task t's best epoch; the first epoch when the metric is never finite."""
        best = (self.scores[0].epoch, math.inf)
        for s in self.scores:
            if math.isfinite(s.metric[t]) and s.metric[t] < best[1]:
                best = (s.epoch, s.metric[t])
        return best

    def objective(self, score: EpochScore) -> float:
        """sum_t v_t * metric_t over tasks with a finite metric (the `sum` objective)."""
        return float(sum(w * m for w, m in zip(self.weights, score.metric, strict=True) if w > 0 and math.isfinite(m)))

    def violation(self, score: EpochScore) -> float:
        """Total constraint violation sum_c max(0, logloss_c - bound_c)."""
        return float(
            sum(
                max(0.0, score.logloss[t] - c.max_loss)
                for c, t in zip(self.constraints, self.constraint_index, strict=True)
                if math.isfinite(score.logloss[t])
            )
        )

    def _candidates(self) -> list[EpochScore]:
        """Epochs where every constraint holds, else the least-violating ones (see the module doc)."""
        if not self.constraints:
            return list(self.scores)
        violations = [self.violation(s) for s in self.scores]
        smallest = min(violations)
        if smallest == 0.0:
            return [s for s, v in zip(self.scores, violations, strict=True) if v == 0.0]
        slack = self.selection.infeasible_tolerance * sum(c.max_loss for c in self.constraints)
        return [s for s, v in zip(self.scores, violations, strict=True) if v <= smallest + slack]

    def _joint_choice(self) -> int:
        # Earliest epoch wins ties (min keeps the first minimum).
        return min(self._candidates(), key=self.objective).epoch

    # ---- bookkeeping --------------------------------------------------------------------------
    def keep(self) -> set[int]:
        """Epochs whose model state may still be selected later (the others can be dropped)."""
        if not self.scores:
            return set()
        if self.selection.combine == "per_task" or not self.constraints:
            return set(self.choice().values())
        # With constraints the rule may move to an epoch that is not chosen now (a later epoch can
        # change which ones are least violating); only an epoch dominated on every constraint's
        # loss and on the objective can never be chosen again.
        points = [(s.epoch, [s.logloss[t] for t in self.constraint_index] + [self.objective(s)]) for s in self.scores]
        return {
            e
            for e, p in points
            if not any(q != p and all(a <= b for a, b in zip(q, p, strict=True)) for _, q in points)
        }

    def should_stop(self) -> bool:
        """True once every task stalled on its own metric and the choice stalled, for `patience` epochs."""
        if not self.scores:
            return False
        last = self.scores[-1].epoch
        if last - self._changed_at < self.patience:
            return False
        for t in range(len(self.tasks)):
            if not any(math.isfinite(s.metric[t]) for s in self.scores):
                continue  # no observed validation rows: nothing to wait for
            if last - self._task_best(t)[0] < self.patience:
                return False
        return True

    def infeasible(self) -> list[dict[str, Any]]:
        """Constraints no epoch met: bound, best loss reached and where, and a sentence for the console."""
        out: list[dict[str, Any]] = []
        for c, t in zip(self.constraints, self.constraint_index, strict=True):
            losses = [(s.logloss[t], s.epoch) for s in self.scores if math.isfinite(s.logloss[t])]
            if not losses:
                continue
            best, epoch = min(losses)
            if best > c.max_loss:
                out.append(
                    {
                        "task": c.task,
                        "bound": c.max_loss,
                        "best_reachable": best,
                        "best_epoch": epoch,
                        "warning": (
                            f"constraint on {c.task!r} is infeasible: validation logloss <= {c.max_loss:g} was never "
                            f"reached (best {best:.4f} at epoch {epoch}); selection fell back to the objective among "
                            f"the least-violating epochs. Raise training.constraints max_loss for {c.task!r} to at "
                            f"least {best:.4f}, or train longer / with a larger model."
                        ),
                    }
                )
        jointly = bool(self.constraints) and self.selection.combine == "sum" and bool(self.scores)
        if not out and jointly and min(self.violation(s) for s in self.scores) > 0:
            out.append(
                {
                    "task": ",".join(c.task for c in self.constraints),
                    "bound": None,
                    "best_reachable": None,
                    "best_epoch": None,
                    "warning": "each constraint held on some epoch but never all together; selection fell back "
                    "to the objective among the least-violating epochs",
                }
            )
        return out
