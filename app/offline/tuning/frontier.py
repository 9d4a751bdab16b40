"""The primary-vs-constraint frontier of the constrained tuner: sweep one bound, plot and tabulate.

Each point is a full constrained fit at one bound b on the training groups, measured on the
held-out groups. The sweep spans the bounds from ranking by the bounded task alone (the least any
weights can meet) to ranking by the primary task alone (the bound no longer binds), each being
that ranking's top-k mean on the training groups plus the room the tuner keeps under a bound for
the held-out check (`bound_room`). Without the room, a sweep on a few hundred requests can lie
entirely below what the tuner may accept, and every point falls back to the same least-violating
weights (MovieLens: room 0.018 against a trade-off 0.007 wide).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.offline.tuning.constrained import ConstrainedTuner, TopKEvaluator, bound_room, holdout_split
from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.objectives import TaskMatrix

__all__ = ["FrontierPoint", "frontier_markdown", "plot_frontier", "sweep_bounds", "sweep_frontier"]


@dataclass(frozen=True)
class FrontierPoint:
    bound: float
    primary_holdout: float
    outcome_holdout: float
    primary_train: float
    outcome_train: float
    feasible_train: bool  # met the bound with the room on the training groups
    feasible_holdout: bool
    weights: dict[str, float]


def sweep_bounds(log: CandidateLog, tuner: ConstrainedTuner, points: int) -> list[float]:
    """`points` bounds for the first bounded task, between its least and its unconstrained value."""
    task = next(iter(tuner.bounds))
    train, held = holdout_split(log, tuner.holdout)
    part = log.subset(train)
    utility_tasks = list(dict.fromkeys([*tuner.tasks, task]))
    matrix = TaskMatrix.from_log(part, utility_tasks, set(tuner.negative) | {task})
    evaluate = TopKEvaluator(part, matrix, primary=tuner.primary, labels=tuner.labels, k=tuner.k, bounded=[task])
    room = bound_room(tuner.confidence, len(train), max(len(held), 1))

    def alone(name: str) -> float:
        weights = np.zeros(len(utility_tasks))
        weights[utility_tasks.index(name)] = 1.0
        got = evaluate(weights)
        return float(got.outcomes[0] + room * got.stderr[0])

    low, high = alone(task), alone(tuner.primary)
    if high <= low:
        return [high]
    return [float(b) for b in np.linspace(low, high, points + 2)[1:-1]]


def sweep_frontier(
    log: CandidateLog, make: Callable[[float], ConstrainedTuner], bounds: list[float]
) -> list[FrontierPoint]:
    """Fit one tuner per bound (`make(b)` builds it), tightest first, and collect held-out figures."""
    points: list[FrontierPoint] = []
    for bound in sorted(bounds):
        # every answer for a tighter bound also meets this one: offer them all as starting points
        tuner = make(bound)
        tuner.warm_starts = [p.weights for p in points]
        tuner.fit(log)
        task = next(iter(tuner.bounds))
        points.append(FrontierPoint(
            bound=bound, primary_holdout=tuner.primary_holdout_, outcome_holdout=tuner.outcomes_holdout_[task],
            primary_train=tuner.primary_train_, outcome_train=tuner.outcomes_train_[task],
            feasible_train=tuner.feasible_train_, feasible_holdout=tuner.feasible_holdout_, weights=tuner.weights_,
        ))
    return points


def frontier_markdown(points: list[FrontierPoint], primary: str, task: str, k: int) -> str:
    tasks = list(points[0].weights) if points else []
    head = (f"| bound on mean p_{task}@{k} | held-out p_{task}@{k} | held-out NDCG@{k} {primary} | "
            f"train NDCG@{k} | fit met bound + room | meets bound held-out | "
            + " | ".join(f"w_{t}" for t in tasks) + " |")
    rule = "|" + "---:|" * (6 + len(tasks))
    rows = [
        f"| {p.bound:.5f} | {p.outcome_holdout:.5f} | {p.primary_holdout:.4f} | {p.primary_train:.4f} | "
        f"{'yes' if p.feasible_train else 'NO'} | {'yes' if p.feasible_holdout else 'NO'} | "
        + " | ".join(f"{p.weights[t]:.3f}" for t in tasks) + " |"
        for p in points
    ]
    return "\n".join([head, rule, *rows]) + "\n"


def plot_frontier(points: list[FrontierPoint], primary: str, task: str, k: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    x = [p.outcome_holdout for p in points]
    y = [p.primary_holdout for p in points]
    ax.plot(x, y, "-o", color="tab:blue", label="tuned weights, held-out groups")
    ax.scatter([p.bound for p in points], y, marker="|", s=200, color="tab:red", label="bound it was tuned for")
    for p in points:
        if not p.feasible_holdout:
            ax.scatter([p.outcome_holdout], [p.primary_holdout], marker="x", s=80, color="black")
    ax.set_xlabel(f"mean p_{task} in the top {k} (lower is better)")
    ax.set_ylabel(f"NDCG@{k} of {primary} (higher is better)")
    ax.set_title(f"{primary} vs {task}: constrained-tuning frontier")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
