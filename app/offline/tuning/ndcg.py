"""NDCG over many groups at once, equal to `sklearn.metrics.ndcg_score` group by group.

Shapes: ``gains``, ``scores`` and ``mask`` are [G, N] (G groups padded to N candidates, mask False in
the padding). Gains are linear (no 2^g - 1) and must be >= 0 where mask is True; the discount of
rank i (0-based) is 1 / log2(i + 2), and 0 from rank k on. Like sklearn (``ignore_ties=False``),
candidates with tied scores share the average of their gains; the ideal DCG sorts the gains.

A group whose ideal DCG is 0 (no gain at all) has no defined NDCG: it is NaN here (sklearn scores
it 0) and `mean_ndcg` leaves it out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["dcg", "dcg_many", "discounts", "ideal_dcg", "mean_ndcg", "ndcg"]

Float = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


def discounts(n: int, k: int | None = None) -> Float:
    """[n] 1 / log2(rank + 2), zero from rank k on."""
    d = 1.0 / np.log2(np.arange(n, dtype=np.float64) + 2.0)
    if k is not None:
        d[k:] = 0.0
    return d


def dcg(gains: Float, scores: Float, mask: Bool, k: int | None = None) -> Float:
    """[G] DCG of ranking each group by `scores` (descending), tied scores sharing their mean gain."""
    return dcg_many(gains[:, :, None], scores, mask, k)[:, 0]


def dcg_many(gains: Float, scores: Float, mask: Bool, k: int | None = None) -> Float:
    """[G, T] DCG of T gain columns (gains [G, N, T]) under one ranking by `scores` [G, N]: one sort."""
    n = scores.shape[1]
    keyed = np.where(mask, -scores, np.inf) if not mask.all() else -scores  # padding sorts last
    order = np.argsort(keyed, axis=1)  # any order of tied scores gives the same tie-averaged DCG
    sorted_keys = np.take_along_axis(keyed, order, axis=1)
    ranked = np.take_along_axis(np.where(mask[:, :, None], gains, 0.0), order[:, :, None], axis=1)
    tied = sorted_keys[:, 1:] == sorted_keys[:, :-1]
    if n > 1 and bool((tied & np.isfinite(sorted_keys[:, 1:])).any()):
        ranked = np.stack([_tie_average(ranked[:, :, t], tied) for t in range(ranked.shape[2])], axis=2)
    out: Float = np.einsum("gnt,n->gt", ranked, discounts(n, k))
    return out


def ideal_dcg(gains: Float, mask: Bool, k: int | None = None) -> Float:
    """[G] DCG of the gains sorted in decreasing order."""
    n = gains.shape[1]
    ideal = -np.sort(-np.where(mask, gains, 0.0), axis=1)
    return ideal @ discounts(n, k)


def ndcg(gains: Float, scores: Float, mask: Bool, k: int | None = None, *, ideal: Float | None = None) -> Float:
    """[G] NDCG of ranking by `scores` with `gains`; NaN where the ideal DCG is 0."""
    best = ideal_dcg(gains, mask, k) if ideal is None else ideal
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(best > 0, dcg(gains, scores, mask, k) / np.where(best > 0, best, 1.0), np.nan)


def mean_ndcg(gains: Float, scores: Float, mask: Bool, k: int | None = None, *, ideal: Float | None = None) -> float:
    """Mean NDCG over the groups where it is defined (NaN if none is)."""
    values = ndcg(gains, scores, mask, k, ideal=ideal)
    defined = np.isfinite(values)
    return float(values[defined].mean()) if defined.any() else float("nan")


def _tie_average(ranked: Float, tied: Bool) -> Float:
    """Replace each run of tied scores (per row) by the mean gain of the run."""
    g, n = ranked.shape
    starts = np.ones((g, n), dtype=np.bool_)
    starts[:, 1:] = ~tied
    run = np.cumsum(starts.reshape(-1)) - 1  # a global run id per cell, rows never share a run
    sums = np.bincount(run, weights=ranked.reshape(-1))
    counts = np.bincount(run)
    averaged: Float = (sums / counts)[run].reshape(g, n)
    return averaged
