"""Find simplex weights whose per-task quantities (NDCG gaps, regrets) split in target fractions.

The quantities are averages of rank metrics, so they are piecewise constant in the weights: a
gradient solver sees a zero gradient and stops where it starts (the known SLSQP failure). Three
derivative-free stages instead, each run only while the error is above the tolerance:

1. multiplicative updates ``w_t <- w_t * (target_t / achieved_t) ** (eta * direction)``, then
   renormalised; direction is +1 when a task's quantity grows with its weight (NDCG gap) and -1 when
   it shrinks (regret). eta halves, restarting from the best point, whenever the error grows (an
   overshoot);
2. Newton steps on log(fractions) = log(targets) over z = log(w), with a Jacobian from forward
   differences of 0.1 in z (wide enough to average over the flat pieces), damped and trust-limited;
3. a Nelder-Mead polish of the error on a softmax parameterisation (w = softmax(z)), started from the
   best point so far with a simplex wide enough (steps of 0.5 in z) to see across the steps.

The error is the absolute fraction error sum, sum_t |achieved_t - target_t|; the best point ever
evaluated is returned, with the range of each task's fraction over every evaluation. When the
tolerance is not met, each task alone (w = e_t) is evaluated too, so the range shows what the
weights can reach: a target outside it is most likely unreachable on these logs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from app.offline.progress import progress_bar
from app.offline.tuning.objectives import softmax

__all__ = ["FractionMatch", "match_fractions"]

Float = npt.NDArray[np.float64]
_FLOOR = 1e-9


@dataclass
class FractionMatch:
    weights: Float  # [T], >= 0, sums to 1
    values: Float  # [T] the quantities at `weights`
    fractions: Float  # [T] values / values.sum()
    error: float  # sum |fractions - targets|
    evaluations: int = 0
    history: list[float] = field(default_factory=list)  # error after each evaluation
    seen_low: Float = field(default_factory=lambda: np.zeros(0))  # [T] least fraction of each task evaluated
    seen_high: Float = field(default_factory=lambda: np.zeros(0))  # [T] largest


class _Tracker:
    """Evaluates the quantities, scores the error and remembers the best point."""

    def __init__(self, evaluate: Callable[[Float], Float], targets: Float, tick: Callable[[], None]) -> None:
        self.evaluate, self.targets, self.tick = evaluate, targets, tick
        self.best: FractionMatch | None = None
        self.history: list[float] = []
        self.low, self.high = np.full(len(targets), np.inf), np.full(len(targets), -np.inf)

    def __call__(self, weights: Float) -> FractionMatch:
        values = np.maximum(self.evaluate(weights), 0.0)
        total = float(values.sum())
        fractions = values / total if total > 0 else np.full(len(values), 1.0 / len(values))
        error = float(np.abs(fractions - self.targets).sum())
        self.history.append(error)
        self.low, self.high = np.minimum(self.low, fractions), np.maximum(self.high, fractions)
        self.tick()
        point = FractionMatch(weights.copy(), values, fractions, error)
        if self.best is None or error < self.best.error:
            self.best = point
        return point

    def best_point(self) -> FractionMatch:
        if self.best is None:
            raise RuntimeError("no point evaluated yet")
        return self.best


class _Reached(Exception):
    """Raised inside the polish to stop it once the tolerance is met."""


def match_fractions(
    evaluate: Callable[[Float], Float],
    targets: Float,
    *,
    increasing: bool,
    eta: float = 1.0,
    max_iter: int = 15,
    newton_iter: int = 6,
    polish_maxfev: int = 100,
    tol: float = 0.002,
    show_progress: bool = False,
    label: str = "tuning",
) -> FractionMatch:
    """evaluate: weights [T] -> quantities [T]. Every stage stops once the error is <= tol."""
    t = len(targets)
    with progress_bar(show_progress) as bar:
        job = bar.add_task(label, total=max_iter + newton_iter * (t + 2) + polish_maxfev)
        tracker = _Tracker(evaluate, targets, lambda: bar.advance(job))
        _multiplicative(tracker, targets, 1.0 if increasing else -1.0, eta, max_iter, tol)
        _newton(tracker, targets, newton_iter, tol)
        if tracker.best_point().error > tol and polish_maxfev > 0:
            _polish(tracker, polish_maxfev, tol)
        if tracker.best_point().error > tol:
            for alone in np.eye(t):  # the corners of the simplex: how far the fractions can move
                tracker(alone)
    best = tracker.best_point()
    best.evaluations = len(tracker.history)
    best.history = tracker.history
    best.seen_low, best.seen_high = tracker.low, tracker.high
    return best


def _multiplicative(tracker: _Tracker, targets: Float, direction: float, eta: float, max_iter: int,
                    tol: float) -> None:
    weights = np.full(len(targets), 1.0 / len(targets))
    previous = np.inf
    for _ in range(max_iter):
        point = tracker(weights)
        if point.error <= tol:
            return
        if point.error > previous:
            eta *= 0.5  # overshoot: take smaller steps from the best point so far
            point = tracker.best_point()
            weights = point.weights
        previous = point.error
        ratio = np.clip(targets / np.maximum(point.fractions, 1e-12), 0.05, 20.0) ** (eta * direction)
        weights = np.maximum(weights * ratio, _FLOOR)
        weights /= weights.sum()


def _newton(tracker: _Tracker, targets: Float, max_iter: int, tol: float, step: float = 0.1) -> None:
    """Newton steps on log(fractions) = log(targets) in z = log(weights), with a forward-difference
    Jacobian. The difference step (0.1 in z, ~10% in a weight) spans many of the tiny flat pieces of
    a many-group objective, so the Jacobian sees the trend rather than a zero gradient."""
    t = len(targets)
    for _ in range(max_iter):
        point = tracker.best_point()
        if point.error <= tol:
            return
        z = np.log(np.maximum(point.weights, _FLOOR))
        base = np.log(np.maximum(point.fractions, 1e-12))
        jacobian = np.empty((t, t))
        for j in range(t):
            moved = z.copy()
            moved[j] += step
            jacobian[:, j] = (np.log(np.maximum(tracker(softmax(moved)).fractions, 1e-12)) - base) / step
        delta = np.linalg.lstsq(jacobian, np.log(targets) - base, rcond=None)[0]
        norm = float(np.abs(delta).max())
        if norm > 2.0:
            delta *= 2.0 / norm  # a trust region: never more than a factor e^2 on one weight at once
        for alpha in (1.0, 0.5, 0.25):
            if tracker(softmax(z + alpha * delta)).error < point.error:
                break
        else:
            return  # no progress along the Newton direction: leave it to the polish


def _polish(tracker: _Tracker, maxfev: int, tol: float) -> None:
    """Nelder-Mead on the error in z, from the best point, with a simplex of steps 0.5."""
    z0 = np.log(np.maximum(tracker.best_point().weights, _FLOOR))
    simplex = np.vstack([z0, z0 + 0.5 * np.eye(len(z0))])

    def error(z: Float) -> float:
        value = tracker(softmax(z)).error
        if value <= tol:
            raise _Reached
        return value

    with contextlib.suppress(_Reached):
        minimize(error, z0, method="Nelder-Mead",
                 options={"initial_simplex": simplex, "maxfev": maxfev, "xatol": 1e-4, "fatol": tol / 10})
