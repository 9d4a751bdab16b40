"""A synthetic but realistic multi-task ranking log for the demo and the tests.

Impressions are (user, item) pairs grouped into requests. Four outcomes with realistic base rates
(click ~5%, purchase ~0.5%, hide ~1%, report ~0.05%) come from hidden logits that mix affinity,
quality, price and segment effects. Two things make a model trained on it miscalibrated, as in
production:
- drift: in the last week (the "recent" period) some segments behave differently than in the
  training weeks (new users click less and hide more, live items click more, products sell less),
  so per-segment calibration is needed on recent data;
- maturity: purchase labels take up to 72 h to arrive; rows whose window has not closed by the
  data cutoff carry mask 0 (missing, not negative), and some hide events are not logged at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

__all__ = [
    "CATEGORICAL",
    "DAYS",
    "NUMERIC",
    "SEGMENTS",
    "START",
    "TASKS",
    "DemoLog",
    "generate_log",
]

TASKS = ("click", "purchase", "hide", "report")
POLARITY = {"click": "positive", "purchase": "positive", "hide": "negative", "report": "negative"}
LABEL_WINDOW_HOURS = {"click": 1.0, "purchase": 72.0, "hide": 24.0, "report": 24.0}
NUMERIC = (
    "user_activity", "user_age_days", "item_quality", "item_price", "item_age_hours",
    "item_popularity", "affinity", "creator_reputation",
)
TENURES = ("new", "casual", "regular", "power")
ITEM_TYPES = ("video", "article", "product", "live")
DEVICES = ("ios", "android", "web")
CATEGORIES = tuple(f"cat{i:02d}" for i in range(20))
CATEGORICAL = {"user_tenure": TENURES, "item_type": ITEM_TYPES, "device": DEVICES, "item_category": CATEGORIES}
SEGMENTS = ("user_tenure", "item_type")
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 28
RECENT_FROM_DAY = 21  # the last week is "recent": segment behaviour has drifted


@dataclass(frozen=True)
class DemoLog:
    """Columnar log; every array has one row per impression."""

    group_id: npt.NDArray[np.int64]
    candidate_id: npt.NDArray[np.int64]
    user_id: npt.NDArray[np.int64]
    event_hours: npt.NDArray[np.float64]  # hours since START
    numeric: npt.NDArray[np.float64]  # [R, len(NUMERIC)]
    categorical: dict[str, npt.NDArray[np.str_]]
    labels: npt.NDArray[np.float64]  # [R, T] 0/1
    mask: npt.NDArray[np.float64]  # [R, T] 1 = observed and mature
    creator_id: npt.NDArray[np.str_]
    sponsored: npt.NDArray[np.bool_]
    eligible: npt.NDArray[np.bool_]
    margin: npt.NDArray[np.float64]
    # With `position_bias` (see `generate_log`): the 0-based position the logging ranker showed each
    # candidate at, and the click probability the candidate would have had without that position's effect.
    position: npt.NDArray[np.int64] | None = None
    true_click: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.group_id)

    def take(self, index: npt.NDArray[np.intp]) -> DemoLog:
        return DemoLog(
            group_id=self.group_id[index], candidate_id=self.candidate_id[index], user_id=self.user_id[index],
            event_hours=self.event_hours[index], numeric=self.numeric[index],
            categorical={k: v[index] for k, v in self.categorical.items()}, labels=self.labels[index],
            mask=self.mask[index], creator_id=self.creator_id[index], sponsored=self.sponsored[index],
            eligible=self.eligible[index], margin=self.margin[index],
            position=None if self.position is None else self.position[index],
            true_click=None if self.true_click is None else self.true_click[index],
        )

    def period(self, first_day: float, last_day: float) -> DemoLog:
        hours = self.event_hours
        return self.take(np.flatnonzero((hours >= first_day * 24) & (hours < last_day * 24)))


def generate_log(
    n_rows: int, seed: int, *, group_size: int = 20, first_day: float = 0.0, last_day: float = DAYS,
    position_bias: float = 0.0,
) -> DemoLog:
    """`n_rows` impressions (rounded down to whole requests) over days [first_day, last_day) of DAYS.

    A narrower window draws rows from the same distribution restricted to those days (drift and label
    maturity depend on the event time only), e.g. days [21, 28) for calibration without the training
    weeks; the default window draws exactly what it always drew.

    position_bias > 0 logs a known position bias: a logging ranker orders each request by item
    popularity (which the true click logit does not read) plus noise, and a click's logit drops by
    `position_bias * log2(1 + position)` at its 0-based position. `position` and `true_click` (the
    click probability without the position term) are then set; the other outcomes are unchanged, and
    position_bias = 0 draws exactly what it always drew.
    """
    if not 0.0 <= first_day < last_day <= DAYS:
        raise ValueError(f"the day window [{first_day}, {last_day}) must lie inside [0, {DAYS}]")
    rng = np.random.default_rng(seed)
    n_users, n_items, n_creators = max(50, n_rows // 40), max(50, n_rows // 60), 200
    n_groups = max(1, n_rows // group_size)
    rows = n_groups * group_size

    # Users and items, with latent vectors whose dot product is the (noisy) affinity.
    user_tenure = rng.choice(len(TENURES), n_users, p=[0.15, 0.35, 0.35, 0.15])
    user_activity = rng.lognormal(0.0, 0.7, n_users) * (1 + user_tenure)
    user_age = rng.gamma(2.0, 60.0, n_users) * (1 + 2 * user_tenure)
    user_device = rng.choice(len(DEVICES), n_users, p=[0.4, 0.45, 0.15])
    user_vec = rng.normal(0, 1, (n_users, 8))
    item_type = rng.choice(len(ITEM_TYPES), n_items, p=[0.4, 0.25, 0.25, 0.1])
    item_category = rng.integers(0, len(CATEGORIES), n_items)
    item_quality = rng.normal(0, 1, n_items)
    item_price = np.where(item_type == 2, rng.lognormal(3.0, 0.8, n_items), 0.0)
    item_popularity = rng.lognormal(2.0, 1.2, n_items)
    item_vec = rng.normal(0, 1, (n_items, 8))
    item_creator = rng.integers(0, n_creators, n_items)
    creator_reputation = rng.normal(0, 1, n_creators)
    item_sponsored = rng.random(n_items) < 0.1
    item_eligible = rng.random(n_items) > 0.03
    category_effect = rng.normal(0, 0.3, len(CATEGORIES))

    group_user = rng.integers(0, n_users, n_groups)
    group_hours = np.sort(rng.uniform(first_day * 24, last_day * 24, n_groups))
    user = np.repeat(group_user, group_size)
    hours = np.repeat(group_hours, group_size)
    item = rng.integers(0, n_items, rows)
    recent = hours >= RECENT_FROM_DAY * 24

    tenure, itype = user_tenure[user], item_type[item]
    affinity = (user_vec[user] * item_vec[item]).sum(axis=1) / np.sqrt(8) + rng.normal(0, 0.5, rows)
    quality = item_quality[item]
    item_age = rng.exponential(48.0, rows)
    reputation = creator_reputation[item_creator[item]]
    log_price = np.log1p(item_price[item])
    fresh = np.exp(-item_age / 72.0)

    # Hidden outcome logits: what the world does (the model sees the features, not these).
    click = (-3.75 + 0.7 * affinity + 0.45 * quality + 0.25 * np.log1p(user_activity[user])
             + 0.3 * fresh + 0.25 * affinity * quality + category_effect[item_category[item]]
             + np.array([-0.2, 0.0, 0.1, 0.25])[tenure] + np.array([0.1, -0.2, -0.3, 0.3])[itype])
    purchase = (-6.2 + 0.9 * affinity + 0.5 * quality - 0.35 * log_price + 1.6 * (itype == 2)
                + 0.2 * (tenure >= 2))
    hide = (-4.9 - 0.5 * quality - 0.35 * affinity + 0.7 * item_sponsored[item]
            + np.array([0.35, 0.1, -0.1, -0.2])[tenure])
    report = -8.6 - 0.9 * quality - 0.9 * reputation + 0.6 * item_sponsored[item]
    # Drift in the recent period, by segment.
    click = click + recent * (-0.45 * (tenure == 0) + 0.55 * (itype == 3))
    purchase = purchase + recent * (-0.5 * (itype == 2) + 0.3 * (tenure == 3))
    hide = hide + recent * (0.6 * (tenure == 0) - 0.3 * (itype == 1))
    position, true_click = None, None
    if position_bias > 0:
        true_click = 1.0 / (1.0 + np.exp(-click))
        position = _logged_positions(np.log(item_popularity[item]), group_size, np.random.default_rng([seed, 1]))
        click = click - position_bias * np.log2(1.0 + position)
    hidden = np.stack([click, purchase, hide, report], axis=1)
    labels = (rng.random(hidden.shape) < 1.0 / (1.0 + np.exp(-hidden))).astype(np.float64)

    # Maturity: a label is observed only once its window closed before the data cutoff.
    cutoff = DAYS * 24.0 + 48.0  # labels were collected two days after the last impression
    windows = np.array([LABEL_WINDOW_HOURS[t] for t in TASKS])
    mask = (hours[:, None] + windows[None, :] <= cutoff).astype(np.float64)
    mask[:, 2] *= rng.random(rows) > 0.02  # some hide events are never logged
    labels *= mask  # an unobserved outcome is stored as 0, and the mask says to ignore it

    numeric = np.stack([
        user_activity[user], user_age[user], quality + rng.normal(0, 0.3, rows), item_price[item],
        item_age, item_popularity[item], affinity + rng.normal(0, 0.3, rows), reputation,
    ], axis=1)
    categorical = {
        "user_tenure": np.array(TENURES)[tenure],
        "item_type": np.array(ITEM_TYPES)[itype],
        "device": np.array(DEVICES)[user_device[user]],
        "item_category": np.array(CATEGORIES)[item_category[item]],
    }
    return DemoLog(
        group_id=np.repeat(np.arange(n_groups, dtype=np.int64), group_size),
        candidate_id=item.astype(np.int64),
        user_id=user.astype(np.int64),
        event_hours=hours,
        numeric=numeric,
        categorical=categorical,
        labels=labels,
        mask=mask,
        creator_id=np.array([f"creator{c:03d}" for c in range(n_creators)])[item_creator[item]],
        sponsored=item_sponsored[item],
        eligible=item_eligible[item],
        margin=np.round(0.2 * item_price[item], 2),
        position=position, true_click=true_click,
    )


def _logged_positions(
    score: npt.NDArray[np.float64], group_size: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """[R] 0-based position of each row in its request (consecutive `group_size` rows) when a ranker orders
    each request by `score` plus noise, best first."""
    noisy = (score + rng.normal(0, 1.0, len(score))).reshape(-1, group_size)
    order = np.argsort(-noisy, axis=1)
    positions = np.empty_like(order)
    np.put_along_axis(positions, order, np.arange(group_size)[None, :], axis=1)
    return positions.reshape(-1).astype(np.int64)


def event_time(hours: float) -> datetime:
    return START + timedelta(hours=float(hours))
