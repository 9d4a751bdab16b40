"""Slate off-policy estimators: the value at top k of a target policy from slates logged with propensities.

Each estimator is a small class in the shape of Open Bandit Pipeline's (`estimate_policy_value`,
`estimate_interval`). They are the *reward-interaction* (cascade) forms for ranked lists: the reward at
position l may depend on the items at positions 0..l, so position l is weighted by the probability
ratio of the whole prefix,

    W[g, l] = prod_{j <= l} target[g, j] / logging[g, j],

where logging[g, j] is what the service logs as `propensity` (the probability of the item at j given
the items above it, `app.serving.exploration`) and target[g, j] the same probability under the target
policy (1 or 0 for a deterministic one). With exact propensities and every target slate reachable by
the logging policy, IPS and DR are unbiased; SNIPS is consistent and usually has a smaller variance.

- `SlateIPS`:  V = mean_g sum_l W[g, l] r[g, l]
- `SlateSNIPS`: V = sum_l (sum_g W[g, l] r[g, l]) / (sum_g W[g, l])
- `SlateDR` (cascade doubly robust, the direct method q the logged model's calibrated predictions):
  V = mean_g sum_l (W[g, l-1] qt[g, l] + W[g, l] (r[g, l] - q[g, l])), W[g, -1] = 1,
  q[g, l] the estimate of the logged item and qt[g, l] the target's expected estimate at l given the logged
  prefix (for a deterministic target, the estimate of its own item at l).
- `SlateDM`: V = mean_g sum_l qt[g, l] on the target's own slate (biased when the predictions are; shown
  for comparison).

Intervals are percentile (Poisson) bootstraps over requests, the unit the logging policy randomised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Interval",
    "SlateDM",
    "SlateDR",
    "SlateFeedback",
    "SlateIPS",
    "SlateSNIPS",
    "effective_sample_size",
]

Float = npt.NDArray[np.float64]
_CHUNK = 64  # bootstrap replicates drawn at once: [64, G] counts


@dataclass(frozen=True)
class SlateFeedback:
    """G logged requests, their first K positions; past the end of a logged slate reward = 0, logging = 1,
    target = 0 (nothing logged there to weight), and the direct method still speaks for the target."""

    reward: Float  # [G, K] observed reward of the logged item at position l
    logging: Float  # [G, K] logging policy's P(logged item at l | logged items above it), in (0, 1]
    target: Float  # [G, K] target policy's P(logged item at l | logged items above it), in [0, 1]
    estimate: Float  # [G, K] direct-method estimate of the logged item's reward at l
    target_estimate: Float  # [G, K] target's expected direct-method estimate at l (given the logged prefix)
    target_only_estimate: Float  # [G, K] direct-method estimate of the target's own item at l (0 past its end)

    @property
    def n_requests(self) -> int:
        return int(self.reward.shape[0])

    def weights(self) -> Float:
        """[G, K] cumulative importance weights W of the prefixes."""
        return np.asarray(np.cumprod(self.target / self.logging, axis=1), dtype=np.float64)

    def take(self, groups: npt.NDArray[np.intp]) -> SlateFeedback:
        return SlateFeedback(self.reward[groups], self.logging[groups], self.target[groups], self.estimate[groups],
                             self.target_estimate[groups], self.target_only_estimate[groups])


@dataclass(frozen=True)
class Interval:
    value: float  # the estimate on the whole log
    lower: float
    upper: float
    confidence: float


def effective_sample_size(data: SlateFeedback) -> Float:
    """[K] Kish's effective number of requests per position, (sum W)^2 / sum W^2 (G when W = 1 everywhere)."""
    w = data.weights()
    squares = (w**2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(squares > 0, w.sum(axis=0) ** 2 / np.where(squares > 0, squares, 1.0), 0.0)


class _SlateEstimator(ABC):
    """Shared machinery: an estimate is sum_l (sum_g numerator) / (sum_g denominator) with [G, K] parts;
    the bootstrap re-weights requests by random counts, so every replicate is two matrix products."""

    name = ""

    @abstractmethod
    def _parts(self, data: SlateFeedback) -> tuple[Float, Float]:
        """([G, K] numerator, [G, K] denominator) of this estimator on `data`."""

    def estimate_policy_value(self, data: SlateFeedback) -> float:
        """The estimated expected sum of rewards over the top K positions per request."""
        numerator, denominator = self._parts(data)
        return float(_ratio(numerator.sum(axis=0), denominator.sum(axis=0)).sum())

    def estimate_interval(
        self, data: SlateFeedback, *, confidence: float = 0.95, n_bootstrap: int = 1000, seed: int = 0
    ) -> Interval:
        """A percentile bootstrap interval over requests (the Poisson bootstrap: each replicate counts every
        request Poisson(1) times, which matches resampling G of G for large G and is one draw per cell)."""
        numerator, denominator = self._parts(data)
        g = data.n_requests
        rng = np.random.default_rng(seed)
        values = []
        for start in range(0, n_bootstrap, _CHUNK):
            counts = rng.poisson(1.0, size=(min(_CHUNK, n_bootstrap - start), g)).astype(np.float64)
            values.append(_ratio(counts @ numerator, counts @ denominator).sum(axis=1))
        replicates = np.concatenate(values)
        tail = (1.0 - confidence) / 2.0
        lower, upper = np.quantile(replicates, [tail, 1.0 - tail])
        return Interval(self.estimate_policy_value(data), float(lower), float(upper), confidence)


def _ratio(numerator: Float, denominator: Float) -> Float:
    """numerator / denominator, 0 where the denominator is 0 (no request reached that position)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.asarray(np.where(denominator > 0, numerator / safe, 0.0), dtype=np.float64)


class SlateIPS(_SlateEstimator):
    """Inverse propensity scoring of the prefixes (reward-interaction IPS)."""

    name = "ips"

    def _parts(self, data: SlateFeedback) -> tuple[Float, Float]:
        return data.weights() * data.reward, np.ones_like(data.reward)


class SlateSNIPS(_SlateEstimator):
    """Self-normalised IPS: each position's weighted reward divided by the sum of its weights."""

    name = "snips"

    def _parts(self, data: SlateFeedback) -> tuple[Float, Float]:
        w = data.weights()
        return w * data.reward, w


class SlateDR(_SlateEstimator):
    """Cascade doubly robust: the direct method corrected by the weighted residuals of the logged rewards."""

    name = "dr"

    def _parts(self, data: SlateFeedback) -> tuple[Float, Float]:
        w = data.weights()
        before = np.concatenate([np.ones((w.shape[0], 1)), w[:, :-1]], axis=1)  # W[g, l-1]
        numerator = before * data.target_estimate + w * (data.reward - data.estimate)
        return numerator, np.ones_like(numerator)


class SlateDM(_SlateEstimator):
    """The direct method alone: the predictions summed over the target's own slate."""

    name = "dm"

    def _parts(self, data: SlateFeedback) -> tuple[Float, Float]:
        return data.target_only_estimate, np.ones_like(data.target_only_estimate)
