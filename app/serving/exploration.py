"""Exploration: randomise some positions of a slate and record the probability of what was served.

A policy's `exploration` block (`app.artifacts.policy.Exploration`) runs after the guardrails and the
slate rules: the pool is every candidate that passed both, in utility order (the answer's top k and
the survivors past it). Exploring only inside that pool keeps every cap satisfied whatever is drawn
(a rule's count over the whole pool is already within its cap), so exploration never shows what a
guardrail or a cap removed, and can show a candidate that `top_k` alone would have cut.

What is logged for the item served at position j (0-based) is its *conditional* propensity: the
probability that the sampler chose it at j given the items served at positions 0..j-1. It is exact:
- softmax (Plackett-Luce): 1 in the protected head; below it, w_a / (sum of w over the pool's
  candidates not yet served), with w = exp(utility / temperature);
- epsilon_greedy: 1 at an unexplored rank; at an explored rank with m candidates not yet placed,
  (1 - epsilon) + epsilon / m for the best of them and epsilon / m for any other.
The product of the conditional propensities of positions 0..j is the probability of the whole prefix,
which is what the slate off-policy estimators (`app.offline.ope`) weight with. The marginal
probability of an item at a position (over every possible prefix) has no closed form and is not logged.

The draw is seeded by blake2b(request id): the same request id is served the same slate (with the same
numpy), and different ids are independent draws.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from app.artifacts.policy import Exploration

__all__ = ["ExploredSlate", "exploration_seed", "explore", "softmax_propensities"]

IntArray = npt.NDArray[np.intp]
Float = npt.NDArray[np.float64]
ExploredSlate = tuple[IntArray, Float]  # (served candidate indices [L], conditional propensity [L])


def exploration_seed(request_id: str | None) -> int:
    """The 64-bit seed of a request's draw; a request without an id draws with seed 0."""
    if request_id is None:
        return 0
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8,
                             person=b"fr-explore").digest()
    return int.from_bytes(digest, "big")


def explore(
    exploration: Exploration, pool: IntArray, utility: Float, length: int, request_id: str | None
) -> ExploredSlate:
    """pool [P]: candidate indices that passed guardrails and caps, best utility first; utility [B];
    length: positions to serve (<= P) -> (served [length], conditional propensity [length])."""
    rng = np.random.default_rng(exploration_seed(request_id))
    if exploration.method == "softmax":
        return _softmax(pool, utility, length, exploration.protect_top, float(exploration.temperature or 1.0), rng)
    return _epsilon_greedy(pool, length, sorted(exploration.ranks), float(exploration.epsilon or 0.0), rng)


def _softmax(
    pool: IntArray, utility: Float, length: int, protect_top: int, temperature: float, rng: np.random.Generator
) -> ExploredSlate:
    head = min(protect_top, length)
    drawn = length - head
    propensity = np.ones(length)
    if drawn <= 0:
        return pool[:length], propensity
    tail = pool[head:]
    scores = utility[tail] / temperature
    # Gumbel-max: sorting score + Gumbel noise draws a Plackett-Luce sequence without replacement.
    keys = scores + rng.gumbel(size=len(tail))
    if drawn < len(tail):
        top = np.argpartition(-keys, drawn - 1)[:drawn]
        top = top[np.argsort(-keys[top], kind="stable")]
    else:
        top = np.argsort(-keys, kind="stable")
    propensity[head:] = softmax_propensities(scores, top)
    return np.concatenate([pool[:head], tail[top]]), propensity


def softmax_propensities(scores: Float, chosen: IntArray) -> Float:
    """scores [P] (utility / temperature of the drawable candidates), chosen [D] (positions into scores, in
    draw order) -> the probability of each draw given the earlier ones [D].

    The remaining mass before draw j is the mass never drawn plus the mass of draws j.. (a reverse cumulative
    sum), not the total minus the draws so far: no cancellation when the first draws hold most of the mass.
    """
    weights = np.exp(scores - scores.max())
    taken = weights[chosen]
    rest = np.ones(len(scores), dtype=np.bool_)
    rest[chosen] = False
    remaining = weights[rest].sum() + np.cumsum(taken[::-1])[::-1]
    return np.asarray(taken / remaining, dtype=np.float64)


def _epsilon_greedy(
    pool: IntArray, length: int, ranks: list[int], epsilon: float, rng: np.random.Generator
) -> ExploredSlate:
    order = pool.copy()
    propensity = np.ones(length)
    # Between explored ranks the slate takes the best remaining candidate: `order[j:]` stays in utility order.
    explored = [r - 1 for r in ranks if r <= length]
    draws = rng.random(len(explored))
    for j, u in zip(explored, draws.tolist(), strict=True):
        m = len(order) - j
        pick = int(rng.integers(m)) if u < epsilon else 0
        if pick:
            order[j:j + pick + 1] = np.r_[order[j + pick], order[j:j + pick]]
        propensity[j] = epsilon / m + (1.0 - epsilon if pick == 0 else 0.0)
    return order[:length], propensity
