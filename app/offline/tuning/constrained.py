"""Maximise a primary ranking objective under upper bounds on expected negative outcomes in the top k.

    maximise   f(w) = mean over groups of NDCG@k of the primary task (labels or predictions)
    subject to c_j(w) = mean over groups of the mean p_j over the top k  <=  b_j

over utility weights w >= 0 summing to 1 (w = softmax(z)). Augmented Lagrangian on the relative
violations r_j = c_j / b_j - 1 (the bounds' scales differ by orders of magnitude):

    L(z, lam) = -f(w) + sum_j (max(0, lam_j + rho r_j)^2 - lam_j^2) / (2 rho)

Each outer step minimises L over z with Nelder-Mead (f and c are piecewise constant in w, so no
gradients), then takes the projected dual step lam_j <- max(0, lam_j + rho r_j) and raises rho when
the violation did not shrink; it stops when a feasible outer iterate improves the primary by less than
`tol`. The answer is the best point that met every bound on the training
groups with room for `confidence` standard errors of the difference between the training and the
held-out mean (c_j + z se_j sqrt(1 + G_train / G_held) <= b_j); it is then checked on held-out
groups, split off deterministically by a hash of group_id.

With a declared segment (`segment`, `app.offline.tuning.segments`) every bound is also a constraint within
each value of a log column (a request-level column or a candidate attribute), with its own room; with
`enforce_segments=False` the values are only reported.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from app.offline.progress import progress_bar
from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.ndcg import discounts, ideal_dcg
from app.offline.tuning.objectives import TaskMatrix, softmax, task_gains, top_k_rows
from app.offline.tuning.segments import Segments, read_segments

__all__ = ["ConstrainedTuner", "TopKEvaluator", "bound_room", "holdout_split"]

Float = npt.NDArray[np.float64]


def holdout_split(log: CandidateLog, fraction: float) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(train, held-out) group positions; a group is held out when crc32(group_id) % 10000 falls under
    fraction * 10000, so the split depends on the ids only (not on row order or a seed)."""
    codes = np.fromiter((zlib.crc32(str(g).encode()) % 10_000 for g in log.group_ids), np.int64,
                        count=log.n_groups)
    held = codes < round(fraction * 10_000)
    return np.flatnonzero(~held), np.flatnonzero(held)


def bound_room(confidence: float, n_train: int, n_held: int) -> float:
    """Room kept under a bound, in standard errors of the training mean: `confidence` standard errors
    of the difference between the training and the held-out mean, se * sqrt(1 + G_train / G_held)."""
    return confidence * float(np.sqrt(1.0 + n_train / n_held))


@dataclass(frozen=True)
class Evaluation:
    primary: float  # mean NDCG@k of the primary task
    outcomes: Float  # [J] mean p per bounded task over the top k
    stderr: Float  # [J] standard error of `outcomes` over groups
    segment_outcomes: Float | None = None  # [S, J] the same within each segment value (a declared segment)
    segment_stderr: Float | None = None  # [S, J]


class TopKEvaluator:
    """Primary NDCG@k and mean bounded-task predictions in the top k, for any weights (vectorised)."""

    def __init__(self, log: CandidateLog, matrix: TaskMatrix, *, primary: str, labels: bool, k: int,
                 bounded: Sequence[str], segments: Segments | None = None) -> None:
        """segments: a declared segment, to evaluate the bounded tasks within each of its values too."""
        self.matrix, self.k = matrix, k
        self.segments = segments.means(log) if segments is not None else None
        task_gain = task_gains(log, matrix, labels=labels)
        t = matrix.tasks.index(primary)
        gains, judged = task_gain.values[:, :, t], task_gain.judged[:, :, t]
        ideal = ideal_dcg(gains, judged, k)
        self.defined = ideal > 0
        self.gains, self.ideal = gains[self.defined], ideal[self.defined]
        # the primary is judged on its condensed list (judged candidates only)
        self.judged = judged[self.defined]
        self.condensed = not bool((judged == matrix.mask).all())
        self.bounded = log.predictions[:, :, [log.task_index(t, field="--bound") for t in bounded]]
        self.discount = discounts(min(k, gains.shape[1]))

    def __call__(self, weights: Float) -> Evaluation:
        utility = self.matrix.utility(weights)
        index, valid = top_k_rows(utility, self.matrix.mask, self.k)
        if self.condensed:
            p_index, p_valid = top_k_rows(utility[self.defined], self.judged, self.k)
        else:
            p_index, p_valid = index[self.defined], valid[self.defined]
        top = np.take_along_axis(self.gains, p_index, axis=1) * p_valid
        primary = float((top @ self.discount / self.ideal).mean()) if self.defined.any() else float("nan")
        picked = np.take_along_axis(self.bounded, index[:, :, None], axis=1) * valid[:, :, None]
        per_group = picked.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None]
        spread = per_group.std(axis=0, ddof=1) if len(per_group) > 1 else np.zeros(per_group.shape[1])
        within = self.segments(per_group, index, valid, picked) if self.segments is not None else (None, None)
        return Evaluation(primary, per_group.mean(axis=0), spread / np.sqrt(max(len(per_group), 1)), *within)


class ConstrainedTuner:
    """Augmented-Lagrangian weight tuning: best primary NDCG@k with bounded negative outcomes."""

    def __init__(
        self,
        *,
        tasks: Sequence[str],
        primary: str,
        bounds: Mapping[str, float],
        negative: Collection[str] = (),
        labels: bool = True,
        k: int = 10,
        holdout: float = 0.3,
        confidence: float = 2.0,
        rho: float = 10.0,
        outer_iter: int = 10,
        inner_maxfev: int = 50,
        tol: float = 1e-4,
        warm_starts: Sequence[Mapping[str, float]] = (),
        show_progress: bool = False,
        segment: str | None = None,
        enforce_segments: bool = True,
        max_segments: int = 20,
        segment_min_groups: int = 5,
    ) -> None:
        self.tasks = tasks
        self.primary = primary
        self.bounds = bounds
        self.negative = negative
        self.labels = labels
        self.k = k
        self.holdout = holdout
        self.confidence = confidence
        self.rho = rho
        self.outer_iter = outer_iter
        self.inner_maxfev = inner_maxfev
        self.tol = tol
        self.warm_starts = warm_starts
        self.show_progress = show_progress
        self.segment = segment  # a log column: report (and with enforce_segments, bound) per value
        self.enforce_segments = enforce_segments
        self.max_segments = max_segments
        self.segment_min_groups = segment_min_groups

    def fit(self, log: CandidateLog) -> Self:
        if self.primary not in self.tasks:
            raise ValueError(f"the primary task {self.primary!r} must be one of the utility tasks {list(self.tasks)}")
        if not self.bounds or any(not (np.isfinite(b) and b > 0) for b in self.bounds.values()):
            raise ValueError(f"give at least one bound TASK=LIMIT with LIMIT > 0, got {dict(self.bounds)}")
        start = time.perf_counter()
        train_groups, held_groups = holdout_split(log, self.holdout)
        if len(train_groups) == 0 or len(held_groups) == 0:
            raise ValueError(f"{log.n_groups} groups are too few to hold out {self.holdout:.0%} of them")
        bounded = list(self.bounds)
        limits = np.array([self.bounds[t] for t in bounded])
        # Held-out groups are a different sample: meet the bound on the training groups with room for
        # `confidence` standard errors of the train - held-out difference of the means.
        room = bound_room(self.confidence, len(train_groups), len(held_groups))
        train_part, held_part = log.subset(train_groups), log.subset(held_groups)
        segments = self._segments(log, train_part, held_part)
        # the same room within each segment value, from its own training and held-out request counts [S, 1]
        segment_room = np.array([[bound_room(self.confidence, int(a), int(b))] for a, b in zip(
            segments.counts(train_part), segments.counts(held_part), strict=True)]) if segments else None

        def evaluator(part: CandidateLog) -> TopKEvaluator:
            matrix = TaskMatrix.from_log(part, self.tasks, self.negative)
            return TopKEvaluator(part, matrix, primary=self.primary, labels=self.labels, k=self.k, bounded=bounded,
                                 segments=segments)

        def violations(got: Evaluation) -> Float:
            """Relative violation of every bound [J], then of every (segment value, bound) [S * J] if enforced."""
            r: Float = (got.outcomes + room * got.stderr) / limits - 1.0
            if segment_room is None or not self.enforce_segments or got.segment_outcomes is None:
                return r
            within = (got.segment_outcomes + segment_room * got.segment_stderr) / limits - 1.0
            return np.concatenate([r, np.ravel(within)]).astype(np.float64)

        train, held = evaluator(train_part), evaluator(held_part)
        if not (train.defined.any() and held.defined.any()):
            raise ValueError(f"no request has a positive {'label' if self.labels else 'prediction'} for the primary"
                             f" task {self.primary!r} in both the training and held-out groups; judge it on"
                             " predictions (--predictions) or log more requests")
        n = len(self.tasks)
        per_value = len(segments.labels) if segments is not None and self.enforce_segments else 0
        lam, rho = np.zeros(len(bounded) * (1 + per_value)), self.rho  # one multiplier per constraint
        best: tuple[float, Float] | None = None  # (primary, weights) of the best feasible point
        least: tuple[float, Float] = (np.inf, np.full(n, 1.0 / n))  # least violating point
        evaluations = 0
        violation = np.inf
        last_primary = -np.inf

        def lagrangian(zz: Float, lam: Float, rho: float) -> float:
            nonlocal best, least, evaluations
            w = softmax(zz)
            got = train(w)
            evaluations += 1
            r = violations(got)
            worst = float(r.max())
            if worst <= 0 and (best is None or got.primary > best[0]):
                best = (got.primary, w)
            if worst < least[0]:
                least = (worst, w)
            penalty = (np.maximum(0.0, lam + rho * r) ** 2 - lam**2).sum() / (2 * rho)
            return -got.primary + float(penalty)

        # Start from the best of: equal weights, mostly the primary task, and any warm start (e.g. the
        # answer for a neighbouring bound in a sweep). The objective is rugged, so this matters.
        leaning = np.zeros(n)
        leaning[list(self.tasks).index(self.primary)] = 2.0
        starts = [np.zeros(n), leaning] + [
            np.log(np.maximum([float(w.get(t, 0.0)) for t in self.tasks], 1e-9)) for w in self.warm_starts
        ]
        z = min(starts, key=lambda s: lagrangian(s, lam, rho))
        with progress_bar(self.show_progress) as bar:
            job = bar.add_task("tune constrained", total=self.outer_iter)
            for _ in range(self.outer_iter):
                simplex = np.vstack([z, z + 0.5 * np.eye(n)])
                result = minimize(lagrangian, z, args=(lam, rho), method="Nelder-Mead",
                                  options={"initial_simplex": simplex, "maxfev": self.inner_maxfev})
                z = result.x
                got = train(softmax(z))
                r = violations(got)
                previous, violation = violation, float(np.maximum(r, 0).max())
                lam = np.maximum(0.0, lam + rho * r)  # projected dual ascent
                if violation > 0 and violation > 0.25 * previous:
                    rho = min(rho * 2.0, 1e4)  # the violation did not shrink enough: penalise harder
                bar.advance(job)
                if violation == 0 and abs(got.primary - last_primary) < self.tol:
                    break  # feasible and no longer improving
                last_primary = got.primary
        weights = best[1] if best is not None else least[1]
        at_train, at_held = train(weights), held(weights)
        self.seconds_ = time.perf_counter() - start
        self.tasks_ = tuple(self.tasks)
        self.weights_ = dict(zip(self.tasks, map(float, weights), strict=True))
        self.multipliers_ = dict(zip(bounded, map(float, lam[: len(bounded)]), strict=True))
        self.feasible_train_ = best is not None
        self.primary_train_, self.primary_holdout_ = at_train.primary, at_held.primary
        self.outcomes_train_ = dict(zip(bounded, map(float, at_train.outcomes), strict=True))
        self.outcomes_holdout_ = dict(zip(bounded, map(float, at_held.outcomes), strict=True))
        self.feasible_holdout_ = bool(all(self.outcomes_holdout_[t] <= self.bounds[t] for t in bounded))
        # what the training groups had to meet: outcome + room <= bound
        self.room_ = dict(zip(bounded, map(float, room * at_train.stderr), strict=True))
        self.n_groups_ = (len(train_groups), len(held_groups))
        self.n_evaluations_ = evaluations
        self.log_path_ = log.path
        self.segments_ = self._segment_report(segments, segment_room, at_train, at_held, train_part, held_part)
        return self

    def _segments(self, log: CandidateLog, train: CandidateLog, held: CandidateLog) -> Segments | None:
        if self.segment is None:
            return None
        segments = read_segments(log, self.segment, max_segments=self.max_segments)
        segments.check_sizes(train, held, self.segment_min_groups)
        return segments

    def _segment_report(
        self, segments: Segments | None, room: Float | None, at_train: Evaluation, at_held: Evaluation,
        train: CandidateLog, held: CandidateLog,
    ) -> dict[str, Any] | None:
        """Per segment value: groups, top-k mean predictions (train, held-out), room kept and feasibility."""
        train_means, train_se, held_means = at_train.segment_outcomes, at_train.segment_stderr, at_held.segment_outcomes
        if segments is None or room is None or train_means is None or train_se is None or held_means is None:
            return None
        bounded, limits = list(self.bounds), np.array(list(self.bounds.values()))
        values: dict[str, Any] = {}
        n_train, n_held = segments.counts(train), segments.counts(held)
        for s, label in enumerate(segments.labels):
            kept = room[s, 0] * train_se[s]
            values[label] = {
                "groups": {"train": int(n_train[s]), "holdout": int(n_held[s])},
                "top_k_mean_prediction": {
                    "train": dict(zip(bounded, map(float, train_means[s]), strict=True)),
                    "holdout": dict(zip(bounded, map(float, held_means[s]), strict=True)),
                },
                "room": dict(zip(bounded, map(float, kept), strict=True)),
                "feasible": {"train": bool((train_means[s] + kept <= limits).all()),
                             "holdout": bool((held_means[s] <= limits).all())},
            }
        return {"column": segments.column, "kind": "candidate" if segments.per_candidate else "request",
                "enforced": self.enforce_segments, "values": values,
                "feasible_holdout": all(v["feasible"]["holdout"] for v in values.values())}

    def signed_weights(self) -> dict[str, float]:
        return {t: -w if t in self.negative else w for t, w in self.weights_.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": "constrained",
            "primary": {"task": self.primary, "metric": f"ndcg@{self.k}",
                        "gains": "labels" if self.labels else "predictions",
                        "train": self.primary_train_, "holdout": self.primary_holdout_},
            "bounds": dict(self.bounds),
            "confidence": self.confidence,
            "top_k_mean_prediction": {"train": self.outcomes_train_, "holdout": self.outcomes_holdout_},
            "room": self.room_,
            "feasible": {"train": self.feasible_train_, "holdout": self.feasible_holdout_},
            "weights": self.weights_,
            "signed_weights": self.signed_weights(),
            "negative_tasks": sorted(t for t in self.tasks if t in self.negative),
            "multipliers": self.multipliers_,
            "groups": {"train": self.n_groups_[0], "holdout": self.n_groups_[1]},
            "log": self.log_path_,
            "evaluations": self.n_evaluations_,
            "seconds": round(self.seconds_, 3),
            **({"segments": self.segments_} if self.segments_ is not None else {}),
        }
