"""A small ranking bandit whose true policy values are known: the yardstick of the off-policy estimators.

Each request offers `n_candidates` items with hidden click and purchase probabilities. The service's
model sees them through noise (its calibrated predictions `p_click`, `p_purchase`), and users see
position l with probability `position_bias[l]`, so the predictions are not the served rewards: a direct
method alone is biased, as in production. The logging policy ranks by p_click + 2 p_purchase and explores
with the service's own sampler (`app.serving.exploration`, softmax below a protected head); its slates are
written as a joined log (the columns of `fusionrank logs join`). The true value of any deterministic policy
over these predictions is its expected rewards over a large fresh sample of requests, exactly in the
labels (no label noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from app.artifacts.policy import Exploration, PolicyFile
from app.offline.ope.evaluate import OpeSettings, evaluate_policy
from app.offline.tuning.logs import candidate_log
from app.offline.tuning.replay import replay_policy
from app.serving.exploration import explore

__all__ = ["BanditEnvironment", "evaluate_seed"]

Float = npt.NDArray[np.float64]
TASKS = ("click", "purchase")


@dataclass(frozen=True)
class BanditEnvironment:
    n_candidates: int = 8
    k: int = 3
    temperature: float = 0.2
    protect_top: int = 0
    logging_weights: tuple[float, float] = (1.0, 2.0)  # click, purchase
    target_weights: tuple[float, float] = (1.0, 0.2)
    prediction_noise: float = 0.4  # logit noise between the hidden probabilities and the model's predictions
    position_decay: float = 0.6  # position_bias[l] = 1 / (1 + l) ** decay

    def position_bias(self) -> Float:
        return np.asarray(1.0 / (1.0 + np.arange(self.k)) ** self.position_decay, dtype=np.float64)

    def policy(self, which: str) -> PolicyFile:
        """The `logging` policy (exploring) or the deterministic `target` policy, as policy files."""
        weights = self.logging_weights if which == "logging" else self.target_weights
        data: dict[str, Any] = {
            "schema_version": 1, "surface": "bandit", "name": f"bandit {which}", "version": which,
            "model": {"name": "bandit", "version": "1"}, "calibration_version": "1",
            "utility": [{"name": task, "task": task, "weight": w} for task, w in zip(TASKS, weights, strict=True)],
            "slate": {"top_k": self.k},
            "governance": {"owner": "ope", "approved_by": ["ope"], "created_at": "2026-01-01T00:00:00Z",
                           "change_note": f"the {which} policy of the OPE yardstick"},
        }
        if which == "logging":
            data["exploration"] = {"method": "softmax", "temperature": self.temperature,
                                   "protect_top": self.protect_top}
        return PolicyFile.model_validate(data)

    def _requests(self, n: int, rng: np.random.Generator) -> tuple[Float, Float]:
        """(hidden probabilities [n, N, 2], calibrated predictions [n, N, 2])."""
        z_click = rng.normal(-1.6, 0.9, (n, self.n_candidates))
        z_purchase = -3.0 + 0.8 * z_click + rng.normal(0.0, 0.8, (n, self.n_candidates))
        hidden = np.stack([z_click, z_purchase], axis=-1)
        noisy = hidden + rng.normal(0.0, self.prediction_noise, hidden.shape)
        return _sigmoid(hidden), _sigmoid(noisy)

    def true_value(self, weights: tuple[float, float], task: str, *, n: int = 200_000, seed: int = 10_000) -> float:
        """The expected sum of `task` outcomes over the top k per request of the deterministic policy ranking by
        weights . predictions (ties: lower candidate index first, as the service's stable sort)."""
        hidden, predictions = self._requests(n, np.random.default_rng(seed))
        utility = predictions @ np.asarray(weights)
        top = np.argsort(-utility, axis=1, kind="stable")[:, : self.k]
        t = TASKS.index(task)
        chosen = np.take_along_axis(hidden[:, :, t], top, axis=1)
        return float((chosen * self.position_bias()).sum(axis=1).mean())

    def joined_log(self, n: int, seed: int) -> pa.Table:
        """n requests served by the logging policy, as a joined log (every candidate a row)."""
        rng = np.random.default_rng(seed)
        hidden, predictions = self._requests(n, rng)
        exploration = Exploration(method="softmax", temperature=self.temperature, protect_top=self.protect_top)
        utility = predictions @ np.asarray(self.logging_weights)
        position = np.full((n, self.n_candidates), -1)
        propensity = np.full((n, self.n_candidates), np.nan)
        for g in range(n):
            pool = np.argsort(-utility[g], kind="stable")
            served, prop = explore(exploration, pool, utility[g], self.k, f"bandit-{seed}-{g}")
            position[g, served] = np.arange(self.k)
            propensity[g, served] = prop
        seen = position >= 0
        bias = np.where(seen, self.position_bias()[np.maximum(position, 0)], 0.0)
        outcomes = rng.random(hidden.shape) < hidden * bias[..., None]
        columns: dict[str, Any] = {
            "request_id": np.repeat([f"{seed}-{g}" for g in range(n)], self.n_candidates),
            "candidate_id": np.tile([f"item{i}" for i in range(self.n_candidates)], n),
            "policy_version": np.full(n * self.n_candidates, "logging"),
            "position": pa.array(position.reshape(-1), pa.int32(), mask=~seen.reshape(-1)),
            "propensity": pa.array(propensity.reshape(-1), pa.float64(), mask=~seen.reshape(-1)),
            "utility": utility.reshape(-1),
            "segment": np.repeat(np.where(np.arange(n) % 3 == 0, "new", "returning"), self.n_candidates),
        }
        for t, task in enumerate(TASKS):
            columns[f"p_{task}"] = predictions[:, :, t].reshape(-1)
            columns[f"label_{task}"] = pa.array(outcomes[:, :, t].reshape(-1).astype(np.int8), mask=~seen.reshape(-1))
            columns[f"mask_{task}"] = seen.reshape(-1).astype(np.int8)
        table = pa.table(columns)
        metadata = {b"fusionrank.log": b"joined", b"fusionrank.tasks": ",".join(TASKS).encode(),
                    b"fusionrank.as_of": datetime(2026, 1, 1, tzinfo=UTC).isoformat().encode()}
        return table.replace_schema_metadata(metadata)


def _sigmoid(x: Float) -> Float:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def evaluate_seed(env: BanditEnvironment, n: int, seed: int, *, n_bootstrap: int = 500) -> dict[str, Any]:
    """Log n requests with `seed`, evaluate the target policy on them through the same path as
    `fusionrank simulate --ope` (joined log -> replay -> estimators): the click report of `evaluate_policy`."""
    table = env.joined_log(n, seed)
    log = candidate_log(table.append_column("group_id", table.column("request_id")), f"bandit seed {seed}")
    replay = replay_policy(log, env.policy("target"), "target", label="target")
    report = evaluate_policy(log, replay, OpeSettings(k=env.k, metrics=("click",), n_bootstrap=n_bootstrap, seed=seed))
    click: dict[str, Any] = report["overall"]["click"]
    return click
