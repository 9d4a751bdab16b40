"""The synthetic demo log: a day window draws the same distribution, restricted to those days."""

from __future__ import annotations

import pytest

from app.offline.synthetic import generator as syn


def test_day_window_draws_only_those_days() -> None:
    log = syn.generate_log(4000, seed=2, first_day=21, last_day=25)
    assert len(log) == 4000
    assert log.event_hours.min() >= 21 * 24 and log.event_hours.max() < 25 * 24


def test_the_last_week_drifts_new_users_clicks_down() -> None:
    # The window keeps what depends on the event time: rows of days 21-28 carry the recent drift.
    early = syn.generate_log(200_000, seed=3, first_day=0, last_day=21)
    late = syn.generate_log(200_000, seed=3, first_day=21, last_day=28)
    new_early = early.categorical["user_tenure"] == "new"
    new_late = late.categorical["user_tenure"] == "new"
    assert late.labels[new_late, 0].mean() < 0.8 * early.labels[new_early, 0].mean()


def test_a_window_outside_the_log_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[25, 21\) must lie inside \[0, 28\]"):
        syn.generate_log(4000, seed=2, first_day=25, last_day=21)
    with pytest.raises(ValueError, match="must lie inside"):
        syn.generate_log(4000, seed=2, first_day=20, last_day=29)
