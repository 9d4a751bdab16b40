"""The policies-folder watcher: new and changed files are validated, a moved pointer is applied,
and a broken file never changes what is served."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.control.watcher import PolicyWatcher, fingerprint
from tests.conftest import ADMIN, ADMIN_TOKEN, POLICIES, write_policy


def _start(client_factory: Callable[..., TestClient], store: Path, policies: Path, **overrides: Any) -> TestClient:
    settings: dict[str, Any] = {"policy_watch_interval": 3600, "admin_token": ADMIN_TOKEN} | overrides
    return client_factory(store=store, policies=policies, **settings)


def _watcher(client: TestClient) -> PolicyWatcher:
    watcher: PolicyWatcher = client.app.state.policy_watcher  # type: ignore[attr-defined]
    return watcher


def _answer(client: TestClient, request: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/score", json=dict(request, options={"debug": True}))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body.pop("timings_ms")
    return body


def _outcomes(changes: list[Any]) -> list[tuple[str, str | None, str | None, str]]:
    return [(c.action, c.before, c.after, c.outcome) for c in changes]


def test_a_broken_file_dropped_in_never_changes_what_is_served(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    watcher, home = _watcher(client), policies / "home"
    served = _answer(client, sample_request)
    state = client.app.state.fusionrank  # type: ignore[attr-defined]
    snapshot = state.snapshot

    (home / "5.yaml").write_text("utility: [\n")  # not even YAML
    assert _outcomes(watcher.poll_once()) == [("load", None, "5", "refused")]
    write_policy(policies, "4", lambda p: p["utility"][3].update(weight=3.0))  # positive weight on `report`
    assert _outcomes(watcher.poll_once()) == [("load", None, "4", "refused")]
    (home / "active").write_text("5\n")  # and point at a broken one
    assert _outcomes(watcher.poll_once()) == [("activate", "1", "5", "refused")]
    # the served policy's own file is overwritten with a broken version of itself
    write_policy(policies, "1", lambda p: p["utility"][2].update(weight=4.0))
    assert _outcomes(watcher.poll_once()) == [("load", "1", "1", "refused")]
    assert _answer(client, sample_request) == served  # same versions, ranks, utilities and terms
    now = state.snapshot.route("home")  # the very same binding objects serve (only `problems` moved on)
    assert now.active == "1" and dict(now.versions) == dict(snapshot.route("home").versions)
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and len(ready["problems"]) == 3  # the refused files, named
    assert all(p.startswith(str(home)) for p in ready["problems"])

    listing = client.get("/admin/policies", headers=ADMIN).json()["surfaces"]["home"]
    assert listing["active"] == "1" and listing["servable"] == ["1", "2", "3"]
    assert set(listing["refused"]) == {"1", "4", "5"} and "utility[3].weight" in listing["refused"]["4"]
    metrics = client.get("/metrics").text
    assert 'fusionrank_policy_file_rejections_total{surface="home"} 3.0' in metrics
    assert 'fusionrank_policy_activation_failures_total{source="watch",surface="home"} 1.0' in metrics
    assert 'fusionrank_policy_active_info{surface="home",version="1"} 1.0' in metrics

    write_policy(policies, "5")  # repaired: it loads, and is no longer a problem
    write_policy(policies, "4")
    (home / "active").write_text("2\n")  # a good pointer is applied
    assert _outcomes(watcher.poll_once()) == [
        ("load", None, "4", "applied"), ("load", None, "5", "applied"), ("activate", "1", "2", "applied"),
    ]
    assert _answer(client, sample_request)["versions"]["policy_version"] == "2"
    assert 'fusionrank_policy_activations_total{source="watch",surface="home"} 1.0' in client.get("/metrics").text
    assert [p for p in client.get("/readyz").json()["problems"] if "1.yaml" not in p] == []


def test_a_valid_change_to_the_active_file_is_reloaded(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    write_policy(policies, "1", lambda p: p["utility"][0].update(weight=1.5))
    assert _outcomes(_watcher(client).poll_once()) == [("reload", "1", "1", "applied")]
    terms = _answer(client, sample_request)["candidates"][0]["debug"]["terms"]
    assert terms[0]["name"] == "click" and terms[0]["weight"] == 1.5


def test_removed_files_and_new_surfaces(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    watcher = _watcher(client)
    (policies / "home" / "2.yaml").unlink()
    assert watcher.poll_once() == []
    assert client.post("/v1/score", json=dict(sample_request, policy_version="2")).status_code == 404
    search = policies / "search"
    search.mkdir()
    text = (POLICIES / "home" / "1.yaml").read_text().replace("surface: home", "surface: search")
    (search / "1.yaml").write_text(text)
    (search / "active").write_text("1\n")
    assert _outcomes(watcher.poll_once()) == [("load", None, "1", "applied"), ("activate", None, "1", "applied")]
    assert _answer(client, dict(sample_request, surface="search"))["surface"] == "search"


def test_api_activation_persists_and_the_watcher_agrees(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    assert client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN).status_code == 200
    assert _watcher(client).poll_once() == []  # it sees the pointer it wrote, already served: nothing to do
    assert _answer(client, sample_request)["versions"]["policy_version"] == "2"


def test_without_persistence_an_api_activation_lasts_until_the_pointer_file_changes(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies, persist_pointers=False)
    watcher = _watcher(client)
    assert client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN).status_code == 200
    assert watcher.poll_once() == []  # the pointer file did not change: the API's choice stands
    assert _answer(client, sample_request)["versions"]["policy_version"] == "2"
    (policies / "home" / "active").write_text("1\n")
    os.utime(policies / "home" / "active")
    (policies / "home" / "shadow").write_text("2\n")
    # the content is what it was at start-up, but the shadow pointer is new: only the shadow changes
    assert _outcomes(watcher.poll_once()) == [("shadow", None, "2", "applied")]
    (policies / "home" / "active").write_text("2\n")
    (policies / "home" / "active").write_text("1\n")
    assert watcher.poll_once() == []
    assert _answer(client, sample_request)["versions"]["policy_version"] == "2"


def _configmap(surface_dir: Path, generation: str, files: dict[str, str]) -> None:
    """Lay files out as a Kubernetes ConfigMap volume does: ..<generation>/, ..data -> it, name -> ..data/name."""
    folder = surface_dir / f"..{generation}"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
        link = surface_dir / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)
    tmp = surface_dir / "..data_tmp"
    tmp.symlink_to(folder.name)
    os.replace(tmp, surface_dir / "..data")  # the atomic swap kubelet does


def test_a_configmap_update_swapping_the_data_symlink_is_applied(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], tmp_path: Path,
    sample_request: dict[str, Any],
) -> None:
    store = store_copy[0]
    policies = tmp_path / "mounted"
    home = policies / "home"
    home.mkdir(parents=True)
    one = (POLICIES / "home" / "1.yaml").read_text()
    two = (POLICIES / "home" / "2.yaml").read_text()
    _configmap(home, "2026_11_26_a", {"1.yaml": one, "active": "1\n"})
    client = _start(client_factory, store, policies, persist_pointers=False)
    assert _answer(client, sample_request)["versions"]["policy_version"] == "1"
    _configmap(home, "2026_11_26_b", {"1.yaml": one, "2.yaml": two, "active": "2\n"})
    shutil.rmtree(home / "..2026_11_26_a")  # kubelet removes the old generation
    assert _outcomes(_watcher(client).poll_once()) == [
        ("load", None, "2", "applied"), ("activate", "1", "2", "applied"),
    ]
    assert _answer(client, sample_request)["versions"]["policy_version"] == "2"


def test_the_watch_thread_applies_a_pointer_change(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies, policy_watch_interval=0.05)
    (policies / "home" / "active").write_text("2\n")
    deadline = time.monotonic() + 10
    while _answer(client, sample_request)["versions"]["policy_version"] != "2":
        assert time.monotonic() < deadline, "the watcher did not apply the pointer within 10 s"
        time.sleep(0.05)


def test_fingerprint_follows_contents_not_names(tmp_path: Path) -> None:
    assert fingerprint(tmp_path / "missing") == {}
    home = tmp_path / "home"
    home.mkdir()
    (home / "1.yaml").write_text("a")
    (home / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    first = fingerprint(tmp_path)
    assert list(first) == ["home"] and list(first["home"]) == ["1.yaml"]
    (home / "1.yaml").write_text("b")
    assert fingerprint(tmp_path)["home"]["1.yaml"] != first["home"]["1.yaml"]


def test_no_watcher_when_the_interval_is_zero(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path]
) -> None:
    client = _start(client_factory, *store_copy, policy_watch_interval=0)
    assert client.app.state.policy_watcher is None  # type: ignore[attr-defined]


def test_a_file_broken_at_start_up_and_repaired_later_becomes_servable(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    write_policy(policies, "3", lambda p: p["governance"].update(approved_by=[]))  # a draft
    client = _start(client_factory, store, policies)
    assert any("3.yaml" in p for p in client.get("/readyz").json()["problems"])
    write_policy(policies, "3")  # approved now
    assert _outcomes(_watcher(client).poll_once()) == [("load", None, "3", "applied")]
    assert client.get("/readyz").json()["problems"] == []
    pinned = client.post("/v1/score", json=dict(sample_request, policy_version="3"))
    assert pinned.status_code == 200 and pinned.json()["versions"]["policy_version"] == "3"
