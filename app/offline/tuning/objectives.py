"""The quantities the tuners steer: NDCG gaps, regrets and top-k outcomes of a linear utility.

The tuned utility of candidate i is ``U_i = sum_t w_t s_t p_it`` with weights w >= 0 summing to 1
and sign s_t = +1 for a positive task, -1 for a negative one (hide, report: a higher p lowers U).
Shapes: p [G, N, T], mask [G, N], w [T].

With `epsilon` (a policy of `ranking.form: product`), p holds log(epsilon + p) instead: the linear utility is then
the log of the product ``prod_t (epsilon + p_t)^(w_t s_t)``, which ranks the same, so the tuners fit exponents.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.ndcg import dcg, dcg_many, ideal_dcg

__all__ = ["TaskGains", "TaskMatrix", "observed_gains", "softmax", "task_gains", "top_k_rows"]

Float = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TaskMatrix:
    """The predictions of the tasks a utility blends, with each task's sign."""

    tasks: tuple[str, ...]
    signs: Float  # [T] +1 positive, -1 negative
    p: Float  # [G, N, T]
    mask: Bool  # [G, N]
    epsilon: float | None = None  # set: p is log(epsilon + p), the product form's log-factors

    @classmethod
    def from_log(
        cls, log: CandidateLog, tasks: Sequence[str], negative: Collection[str] = (), *, epsilon: float | None = None
    ) -> TaskMatrix:
        index = [log.task_index(t) for t in tasks]
        signs = np.array([-1.0 if t in negative else 1.0 for t in tasks])
        p = np.ascontiguousarray(log.predictions[:, :, index])
        if epsilon is not None:
            present = log.mask[:, :, None]
            p = np.where(present, np.log(epsilon + np.where(present, p, 0.0)), 0.0)
        return cls(tuple(tasks), signs, p, log.mask, epsilon)

    def utility(self, weights: Float) -> Float:
        """[G, N] U for weights [T] (0 in the padding)."""
        return self.p @ (weights * self.signs)

    def utility_gains(self, utility: Float) -> Float:
        """The full utility as NDCG gains: U itself when every task is positive (exactly sklearn's
        y_true), else U minus its group minimum, since NDCG needs gains >= 0 (same order). In log space
        (`epsilon`), the product utility exp(U) itself, which is > 0."""
        if self.epsilon is not None:
            return np.where(self.mask, np.exp(utility), 0.0)
        if (self.signs > 0).all():
            return utility
        low = np.where(self.mask, utility, np.inf).min(axis=1, keepdims=True)
        return np.where(self.mask, utility - low, 0.0)

    def ndcg_gaps(self, weights: Float, k: int | None = None) -> Float:
        """[T] mean over groups of 1 - NDCG(gains = U, ranking by U without task t)."""
        utility = self.utility(weights)
        gains = self.utility_gains(utility)
        best = ideal_dcg(gains, self.mask, k)
        defined = best > 0
        if not defined.any():
            return np.zeros(len(self.tasks))
        gaps = np.empty(len(self.tasks))
        for t in range(len(self.tasks)):  # T sorts of [G, N], vectorised over groups
            without = utility - weights[t] * self.signs[t] * self.p[:, :, t]
            gaps[t] = 1.0 - float((dcg(gains, without, self.mask, k)[defined] / best[defined]).mean())
        return gaps

    def regrets(self, weights: Float, gains: TaskGains, ideal: Float, k: int | None = None) -> Float:
        """[T] mean over groups of 1 - NDCG(gains = task t's gains, ranking by U).

        `ideal` [G, T] is each task's ideal DCG (constant, computed once with `ideal_dcgs`).
        """
        utility = self.utility(weights)
        if gains.judged_everywhere:
            got = dcg_many(gains.values, utility, self.mask, k)  # one sort for every task
        else:  # condensed lists: each task ranks only its judged candidates
            got = np.stack([dcg(gains.values[:, :, t], utility, gains.judged[:, :, t], k)
                            for t in range(len(self.tasks))], axis=1)
        out = np.empty(len(self.tasks))
        for t in range(len(self.tasks)):
            defined = ideal[:, t] > 0
            out[t] = 1.0 - float((got[defined, t] / ideal[defined, t]).mean()) if defined.any() else 0.0
        return out

    def ideal_dcgs(self, gains: TaskGains, k: int | None = None) -> Float:
        return np.stack([ideal_dcg(gains.values[:, :, t], gains.judged[:, :, t], k) for t in range(len(self.tasks))],
                        axis=1)


@dataclass(frozen=True)
class TaskGains:
    """Gains to judge a ranking by, per task, and which candidates are judged at all."""

    values: Float  # [G, N, T], 0 where not judged
    judged: Bool  # [G, N, T] False in the padding and where a label is unobserved
    judged_everywhere: bool  # judged == mask for every task (no unobserved label)


def observed_gains(log: CandidateLog, tasks: Sequence[str], *, labels: bool) -> TaskGains:
    """The calibrated predictions as gains, or with `labels` the observed labels.

    Missing is not negative: a candidate whose label is unobserved (not yet mature, not logged) is
    left out of that task's ranking — a condensed list (Sakai, 2007): NDCG is taken over the judged
    candidates, in the order the ranking gives them. A task without any label in the log is judged
    on its predictions.
    """
    index = [log.task_index(t) for t in tasks]
    values = log.predictions[:, :, index].copy()
    judged = np.repeat(log.mask[:, :, None], len(index), axis=2)
    if labels:
        observed = log.labels[:, :, index]
        seen = np.isfinite(observed) & judged
        has_labels: Bool = np.any(seen, axis=(0, 1))  # [T]
        values = np.where(has_labels[None, None, :], np.where(seen, observed, 0.0), values)
        judged = np.where(has_labels[None, None, :], seen, judged)
    values = np.where(judged, values, 0.0)
    everywhere = bool((judged == log.mask[:, :, None]).all())
    return TaskGains(values, judged, everywhere)


def task_gains(log: CandidateLog, matrix: TaskMatrix, *, labels: bool) -> TaskGains:
    """Each task's own gains (`observed_gains`); a negative task's best candidate is its least
    likely one, so its gains are the group's largest judged value minus the value."""
    gains = observed_gains(log, matrix.tasks, labels=labels)
    values = gains.values.copy()
    for t in np.flatnonzero(matrix.signs < 0):
        judged = gains.judged[:, :, t]
        top = np.where(judged, values[:, :, t], -np.inf).max(axis=1, keepdims=True)
        values[:, :, t] = np.where(judged, top - values[:, :, t], 0.0)
    return TaskGains(values, gains.judged, gains.judged_everywhere)


def top_k_rows(utility: Float, mask: Bool, k: int) -> tuple[npt.NDArray[np.intp], Bool]:
    """The k best positions per group by utility: (index [G, k'], valid [G, k']), k' = min(k, N),
    in decreasing utility; valid is False where a group has fewer than k candidates."""
    n = utility.shape[1]
    kk = min(k, n)
    keyed = np.where(mask, -utility, np.inf)
    if kk < n:
        part = np.argpartition(keyed, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), keyed.shape).copy()
    inner = np.argsort(np.take_along_axis(keyed, part, axis=1), axis=1, kind="stable")
    index = np.take_along_axis(part, inner, axis=1)
    return index, np.take_along_axis(mask, index, axis=1)


def softmax(z: Float) -> Float:
    """Weights on the simplex from unconstrained parameters z [T]."""
    e = np.exp(z - z.max())
    w: Float = e / e.sum()
    return w
