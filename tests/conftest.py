"""Shared fixtures: the shipped demo bundle, copies of it to break, and a TestClient."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MODEL_STORE = ROOT / "model_store"
POLICIES = ROOT / "policies"
BUNDLE = MODEL_STORE / "demo_ranker" / "1"


@pytest.fixture(scope="session")
def sample_request_body() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BUNDLE / "sample_request.json").read_text())
    return data


@pytest.fixture
def sample_request(sample_request_body: dict[str, Any]) -> dict[str, Any]:
    """A fresh, mutable copy of the bundle's sample /v1/score body."""
    return copy.deepcopy(sample_request_body)


@pytest.fixture
def store_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A writable copy of model_store/ and policies/ (to corrupt in a test)."""
    store, policies = tmp_path / "model_store", tmp_path / "policies"
    shutil.copytree(MODEL_STORE, store)
    shutil.copytree(POLICIES, policies)
    return store, policies


def make_settings(store: Path = MODEL_STORE, policies: Path = POLICIES, **overrides: Any) -> Settings:
    return Settings(model_store=store, policies=policies, **overrides)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The service on the shipped demo bundle, lifespan included."""
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


@pytest.fixture
def client_factory() -> Iterator[Callable[..., TestClient]]:
    """Start a service with custom settings; every client is closed after the test."""
    opened: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        test_client = TestClient(create_app(make_settings(**overrides)))
        test_client.__enter__()
        opened.append(test_client)
        return test_client

    yield factory
    for test_client in opened:
        test_client.__exit__(None, None, None)


ADMIN_TOKEN = "alice-token-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def write_policy(policies: Path, version: str, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Write `policies/home/<version>.yaml` as a copy of the shipped version 1, edited."""
    import yaml

    data: dict[str, Any] = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())
    data["version"] = version
    if edit is not None:
        edit(data)
    path = policies / "home" / f"{version}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
