"""Admin tokens and watcher settings from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings, get_settings

TOKEN = "x" * 24


def test_named_admin_tokens_come_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONRANK_MODEL_STORE", "model_store")
    monkeypatch.setenv("FUSIONRANK_POLICIES", "policies")
    monkeypatch.setenv("FUSIONRANK_ADMIN_TOKENS", f'{{"alice": "{TOKEN}a", "bob": "{TOKEN}b"}}')
    monkeypatch.setenv("FUSIONRANK_ADMIN_TOKEN", f"{TOKEN}c")
    monkeypatch.setenv("FUSIONRANK_POLICY_WATCH_INTERVAL", "0.5")
    settings = get_settings()
    credentials = {name: s.get_secret_value() for name, s in settings.admin_credentials().items()}
    assert credentials == {"alice": f"{TOKEN}a", "bob": f"{TOKEN}b", "admin": f"{TOKEN}c"}
    assert settings.policy_watch_interval == 0.5
    assert TOKEN not in repr(settings)  # secrets never show in a repr or a log line


def test_no_token_means_no_admin_api() -> None:
    assert Settings(model_store="m", policies="p").admin_credentials() == {}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [{"admin_token": "short"}, {"admin_tokens": {"alice": "short"}}, {"admin_tokens": {"bad name": TOKEN}},
     {"policy_watch_interval": -1}],
)
def test_weak_tokens_and_bad_intervals_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(model_store="m", policies="p", **overrides)  # type: ignore[arg-type]
