"""Fill a slate under a policy's `ranking` block: history, fatigue, diversity decay, caps, shares, MMR, minimums.

The fill order (docs/policies.md, "Ranking"), for the candidates that passed the guardrails:
1. `history.previously_seen` removes the candidates whose id the request lists as seen (stage `guardrail`,
   rule `previously_seen`; `seen_mask`, applied by the scorer with the guardrails);
2. the ranking score starts as the utility; `history.fatigue` multiplies it by max((1 - decay)^n, floor), n the
   request's negative feedback count for the candidate's creator;
3. `diversity` rules multiply it by max((1 - decay)^k, floor), k the candidates with the same value ranked above it
   by the score of step 2 (as X's home-mixer does); the candidates are then ordered by the decayed score. A negative
   score is multiplied by 2 - factor instead, so a decayed candidate always ranks lower;
4. the slate's max caps (`slate.max_per_value`, `slate.max_matching`) drop over-cap candidates, in that order;
5. `max_share` rules drop the matching candidates past floor(share x L), L the slate length (top_k, or fewer when
   fewer candidates remain after the drops);
6. `mmr` reorders the first L positions greedily (`app.artifacts.policy_ranking.MmrRule`);
7. `minimums`, in file order: when fewer than `min` matching candidates sit in the first min(within, L) positions,
   the best-ranked matching ones below are promoted to the last positions of that head, displacing its
   lowest-ranked non-matching candidates (never one an earlier minimum promoted) to just below it. A minimum that
   cannot be met (too few matching candidates, or nothing left to displace) promotes what it can and is reported
   (`Shortfall`; debug `slate_shortfalls`, metric `fusionrank_slate_minimum_shortfalls_total`);
8. top_k. Exploration, if any, then draws from the result in this order with the ranking score in place of the
   utility (minimums must lie inside its unexplored head: `check_ranking_references`).
Every step only drops or reorders candidates inside the capped pool, so the caps hold whatever follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.artifacts.policy import SlateRules
from app.artifacts.policy_ranking import MaxShareRule, MinimumRule, MmrRule, RankingRules
from app.serving.attributes import AttributeColumns, equals_mask, range_mask
from app.serving.slate import SlateResult, apply_caps, occurrence_rank, py_values, value_codes

__all__ = ["RankingTrace", "Shortfall", "rank_slate", "ranking_debug", "seen_mask"]

Float = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A minimum that could not be met: `got` matching candidates among the first `within`, `wanted` asked."""

    rule: str
    wanted: int
    got: int
    within: int


@dataclass(slots=True)
class RankingTrace:
    """What the ranking steps did, per candidate [B], for debug output and metrics."""

    score: Float  # the ranking score: the utility after fatigue and diversity decay
    fatigue: Float | None = None  # the fatigue factor (None: no fatigue applied)
    decay: dict[str, Float] = field(default_factory=dict)  # diversity rule -> factor
    mmr_penalty: Float | None = None  # (1 - lambda) x largest similarity when placed; NaN when not placed by MMR
    promoted: dict[int, str] = field(default_factory=dict)  # candidate -> the minimum that promoted it
    shortfalls: list[Shortfall] = field(default_factory=list)


def ranking_debug(trace: RankingTrace, index: int) -> dict[str, object]:
    """One candidate's ranking steps, as debug output shows them (`CandidateDebug.ranking`)."""
    out: dict[str, object] = {"score": float(trace.score[index])}
    if trace.fatigue is not None:
        out["fatigue"] = float(trace.fatigue[index])
    if trace.decay:
        out["decay"] = {name: float(factor[index]) for name, factor in trace.decay.items()}
    if trace.mmr_penalty is not None and trace.mmr_penalty[index] == trace.mmr_penalty[index]:
        out["mmr_penalty"] = float(trace.mmr_penalty[index])
    if index in trace.promoted:
        out["promoted_by"] = trace.promoted[index]
    return out


def seen_mask(ids: Sequence[str], seen: Sequence[str]) -> Bool:
    """True where a candidate's id is among the request's recently seen ids."""
    lookup = frozenset(seen)
    return np.fromiter((i in lookup for i in ids), np.bool_, count=len(ids))


def rank_slate(
    kept: IntArray,
    utility: Float,
    attributes: AttributeColumns,
    ranking: RankingRules,
    caps: SlateRules,
    top_k: int | None,
    negative_feedback: Mapping[str, int],
) -> tuple[SlateResult, RankingTrace]:
    """kept: the candidates that passed every filter -> the slate and its trace (module docstring)."""
    trace = RankingTrace(score=utility.copy())
    fatigue = ranking.history.fatigue if ranking.history is not None else None
    if fatigue is not None and negative_feedback:
        values = attributes[fatigue.attribute]
        counts = np.array([negative_feedback.get(v, 0) if isinstance(v, str) else 0 for v in values], dtype=np.float64)
        trace.fatigue = np.maximum((1.0 - fatigue.decay) ** counts, fatigue.floor)
        trace.score = _decayed(trace.score, trace.fatigue)
    order = kept[np.argsort(-trace.score[kept], kind="stable")]
    codes_of: dict[str, IntArray] = {}  # attribute -> value codes, computed once per request

    def codes(name: str) -> IntArray:
        if name not in codes_of:
            codes_of[name] = value_codes(py_values(attributes[name]))
        return codes_of[name]

    if ranking.diversity:
        total = np.ones(len(order))
        for rule in ranking.diversity:
            k = occurrence_rank(codes(rule.attribute)[order])
            factor = np.maximum((1.0 - rule.decay) ** k, rule.floor)
            full = np.ones(len(utility))
            full[order] = factor
            trace.decay[rule.name] = full
            total *= factor
        decayed = _decayed(trace.score[order], total)
        trace.score[order] = decayed
        order = order[np.argsort(-decayed, kind="stable")]
    order, dropped = apply_caps(order, attributes, caps, codes_of)
    for share in ranking.max_share:
        order, over = _apply_share(order, _matching(share, attributes), share, top_k)
        if over.size:
            dropped.append((over, share.name))
    length = len(order) if top_k is None else min(top_k, len(order))
    if ranking.mmr is not None and length > 1:
        order = _mmr(order, trace, attributes, ranking.mmr, length, codes)
    for minimum in ranking.minimums:
        order = _apply_minimum(order, _matching(minimum, attributes), minimum, length, trace)
    return SlateResult(order[:length], dropped, order[length:]), trace


def _decayed(score: Float, factor: Float) -> Float:
    """score x factor, or x (2 - factor) for a negative score: lower either way, |score| at most doubled."""
    return np.where(score >= 0.0, score * factor, score * (2.0 - factor))


def _matching(rule: MaxShareRule | MinimumRule, attributes: AttributeColumns) -> Bool:
    """[B] True where the candidate has the rule's property (a missing value never has it)."""
    column = attributes[rule.attribute]
    if rule.equals is not None:
        return equals_mask(column, rule.equals)
    return range_mask(column, rule.below, rule.above)


def _apply_share(order: IntArray, matches: Bool, rule: MaxShareRule, top_k: int | None) -> tuple[IntArray, IntArray]:
    """Drop the matching candidates past floor(share x L); L shrinks with the drops, so iterate to its fixed point."""
    hits = matches[order]
    length = len(order) if top_k is None else min(top_k, len(order))
    cumulative = np.cumsum(hits)
    while True:
        over = hits & (cumulative > int(np.floor(rule.share * length + 1e-9)))
        shorter = len(order) - int(over.sum())
        new_length = shorter if top_k is None else min(top_k, shorter)
        if new_length == length:
            return order[~over], order[over]
        length = new_length


def _mmr(
    order: IntArray,
    trace: RankingTrace,
    attributes: AttributeColumns,
    rule: MmrRule,
    length: int,
    codes_of: Callable[[str], IntArray],
) -> IntArray:
    lam = rule.lambda_
    column = attributes[rule.attribute]
    score = trace.score[order]
    penalty = np.full(len(trace.score), np.nan)
    if isinstance(column, np.ndarray) and column.ndim == 2:
        chosen, paid = _mmr_vectors(score, column, order, lam, length)
        rest = np.ones(len(order), dtype=np.bool_)
        rest[chosen] = False
        penalty[order[chosen]] = paid
        trace.mmr_penalty = penalty
        return np.concatenate([order[chosen], order[rest]])
    # Categorical: a candidate's penalty is (1 - lambda) once a candidate of its value is placed, which happens
    # before it (the first of each value has the higher score): greedy MMR is a sort by this static key.
    codes = codes_of(rule.attribute)[order]
    repeat = (occurrence_rank(codes) > 0) & (codes >= 0)
    repeat_penalty = (1.0 - lam) * repeat.astype(np.float64)
    reordered = np.argsort(-(lam * score - repeat_penalty), kind="stable")
    penalty[order] = repeat_penalty
    trace.mmr_penalty = penalty
    return order[reordered]


def _mmr_vectors(score: Float, column: Float, order: IntArray, lam: float, length: int) -> tuple[IntArray, Float]:
    """Greedy MMR on cosine similarity clipped at 0 -> (positions in `order` chosen in order, their penalties).

    score: the ranking scores of `order`, best first; column: [B, D] vectors of every candidate. Candidate j cannot
    be among the first `length` picks when `length` others have lambda x s_i - (1 - lambda) > lambda x s_j (each of
    them beats j at every step), so only the prefix of candidates with lambda x s_j >= lambda x s_(length) -
    (1 - lambda) is searched: exact, and small when scores spread wider than (1 - lambda) / lambda.
    """
    threshold = lam * score[length - 1] - (1.0 - lam)
    pool = int(np.searchsorted(-(lam * score), -threshold, side="right"))
    searched = column[order[:pool]]  # a copy: only the searched rows are gathered
    missing = np.isnan(searched[:, 0])  # a missing vector is a row of NaN; a present one is finite (`vectors`)
    if missing.any():
        searched[missing] = 0.0
    norms = np.sqrt(np.einsum("ij,ij->i", searched, searched))
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)  # a zero vector: similar to nothing
    unit = searched * inverse[:, None]
    base = lam * score[:pool]
    weighted = (1.0 - lam) * unit
    # current = base - (1 - lambda) x max(0, largest similarity so far): each pick lowers it to
    # min(current, base - (1 - lambda) x similarity), which also keeps the clip at 0 (current <= base) and
    # the candidates already placed at -inf. Each step is a few numpy calls on preallocated buffers: the loop's
    # cost is their overhead (a small pool) or the product (a large one).
    current = base.copy()
    chosen = np.empty(length, dtype=np.intp)
    value = np.empty(length)  # current[j] when j was picked
    argmax, minimum = current.argmax, np.minimum
    if pool <= 4 * length:  # a small pool: every similarity at once (pool^2 x D), then one row per pick
        lowered = base[None, :] - weighted @ unit.T
        np.fill_diagonal(lowered, -np.inf)  # a pick's own row places it at -inf
        for t in range(length):
            j = argmax()
            chosen[t], value[t] = j, current[j]
            minimum(current, lowered[j], out=current)
    else:
        row = np.empty(pool)
        dot, subtract = np.dot, np.subtract
        for t in range(length):
            j = argmax()
            chosen[t], value[t] = j, current[j]
            subtract(base, dot(weighted, unit[j], out=row), out=row)
            minimum(current, row, out=current)
            current[j] = -np.inf
    return chosen, base[chosen] - value


def _apply_minimum(order: IntArray, matches: Bool, rule: MinimumRule, length: int, trace: RankingTrace) -> IntArray:
    within = min(rule.within, length)
    hits = matches[order]
    have = int(hits[:within].sum())
    need = rule.min - have
    if need <= 0:
        return order
    protected = np.fromiter((i in trace.promoted for i in order[:within].tolist()), np.bool_, count=within)
    below = np.flatnonzero(hits[within:]) + within
    displaceable = np.flatnonzero(~hits[:within] & ~protected)
    moved = min(need, len(below), len(displaceable))
    if moved < need:
        trace.shortfalls.append(Shortfall(rule.name, rule.min, have + moved, within))
    if moved == 0:
        return order
    take, give = below[:moved], displaceable[len(displaceable) - moved:]
    keep_head = np.ones(within, dtype=np.bool_)
    keep_head[give] = False
    rest = np.ones(len(order) - within, dtype=np.bool_)
    rest[take - within] = False
    for index in order[take].tolist():
        trace.promoted[index] = rule.name
    return np.concatenate([order[:within][keep_head], order[take], order[give], order[within:][rest]])
