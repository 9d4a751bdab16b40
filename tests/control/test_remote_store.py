"""Object-storage backends against a real S3-compatible server (moto's server mode, 127.0.0.1, started here).

A replica whose FUSIONRANK_MODEL_STORE and FUSIONRANK_POLICIES are s3:// URIs serves a local mirror of them
(app/control/remote_store.py): it scores exactly as the local store does, picks up a changed object at the
next watcher pass, and refuses a model.onnx whose sha256 does not match its manifest, serving on. Admin changes
write the rollout file with a conditional PUT: of two replicas racing, exactly one wins, the other gets 409.

moto's S3 honours `If-Match` and `If-None-Match: *` on PutObject, but checks the condition and stores the
object in two steps: in its threaded server two concurrent PUTs can both pass the check (seen here: 2 winners
of 8 racers, 1 trial in 5). S3 applies a conditional write atomically. So the server here runs moto's
application one request at a time, which is S3's atomicity; the writes still race (two clients, two
connections), and an unconditional PUT would let both writers win.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.artifacts.rollout import ROLLOUT_FILE, RolloutState, RolloutTriple
from app.control.declared import DeclaredFiles, parse_declared
from app.control.remote_store import RemoteStore, write_text_atomic
from app.errors import Conflict
from app.main import create_app
from app.settings import Settings
from tests.conftest import ADMIN_TOKEN, MODEL_STORE, POLICIES, make_settings
from tests.deploy.conftest import free_port

s3fs = pytest.importorskip("s3fs", reason="the `store` extra (fsspec + s3fs) is part of the dev install")

BUCKET = "fusionrank-test"


# moto_server's application, served one request at a time (see the module docstring).
_SERIAL_MOTO = """
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False,
           request_handler=MotoRequestHandler)
"""


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1 for this module; stopped afterwards."""
    pytest.importorskip("moto.moto_server.werkzeug_app", reason="moto[server] is part of the dev install")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", _SERIAL_MOTO, str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and process.poll() is None, "moto_server did not start"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty bucket holding copies of model_store/ and policies/; the s3fs client of the test."""
    for name, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    fs.put(str(MODEL_STORE), f"{BUCKET}/model_store", recursive=True)
    fs.put(str(POLICIES), f"{BUCKET}/policies", recursive=True)
    yield fs


def remote_settings(cache: Path, **overrides: Any) -> Settings:
    # A long poll interval: the test runs the watcher's passes itself.
    return Settings(model_store=f"s3://{BUCKET}/model_store", policies=f"s3://{BUCKET}/policies",
                    store_cache=cache, policy_watch_interval=3600, **overrides)


def score(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return {"candidates": answer["candidates"], "versions": answer["versions"]}


def test_a_replica_on_s3_scores_as_the_local_store_does(
    bucket: Any, tmp_path: Path, sample_request: dict[str, Any]
) -> None:
    started = time.perf_counter()
    with TestClient(create_app(remote_settings(tmp_path / "cache"))) as remote:
        from_s3 = score(remote, sample_request)
    seconds = time.perf_counter() - started
    with TestClient(create_app(make_settings())) as local:
        assert score(local, sample_request) == from_s3
    mirrored = tmp_path / "cache" / "model_store" / "demo_ranker" / "1" / "model.onnx"
    assert mirrored.read_bytes() == (MODEL_STORE / "demo_ranker" / "1" / "model.onnx").read_bytes()
    assert seconds < 30


def test_a_changed_object_is_picked_up_at_the_next_pass(
    bucket: Any, tmp_path: Path, sample_request: dict[str, Any]
) -> None:
    with TestClient(create_app(remote_settings(tmp_path / "cache"))) as client:
        assert score(client, sample_request)["versions"]["policy_version"] == "1"
        bucket.pipe_file(f"{BUCKET}/policies/home/active", b"2\n")
        client.app.state.policy_watcher.poll_once()  # type: ignore[attr-defined]
        assert score(client, sample_request)["versions"]["policy_version"] == "2"
        # Nothing changed since: the next pass downloads nothing.
        assert client.app.state.policy_watcher.mirror.sync() == []  # type: ignore[attr-defined]


def test_a_corrupted_model_is_refused_and_the_last_good_bundle_serves_on(
    bucket: Any, tmp_path: Path, sample_request: dict[str, Any]
) -> None:
    settings = remote_settings(tmp_path / "cache")
    with TestClient(create_app(settings)) as client:
        before = score(client, sample_request)
        good = (settings.model_store / "demo_ranker" / "1" / "model.onnx").read_bytes()
        bucket.pipe_file(f"{BUCKET}/model_store/demo_ranker/1/model.onnx", good[:-64] + b"\0" * 64)
        watcher = client.app.state.policy_watcher  # type: ignore[attr-defined]
        watcher.poll_once()
        assert (settings.model_store / "demo_ranker" / "1" / "model.onnx").read_bytes() == good
        refused = watcher.mirror.mirrors[0].refused
        assert list(refused) == ["demo_ranker/1/model.onnx"]
        assert "does not match the manifest's model_sha256" in refused["demo_ranker/1/model.onnx"][1]
        assert watcher.mirror.sync() == []  # not downloaded again until it changes
        assert score(client, sample_request) == before
        # The good model uploaded again: the cache already holds it (same ETag), the refusal is forgotten.
        bucket.pipe_file(f"{BUCKET}/model_store/demo_ranker/1/model.onnx", good)
        assert watcher.mirror.sync() == []
        assert refused == {}


def test_a_new_bundle_version_lands_complete(bucket: Any, tmp_path: Path) -> None:
    """A bundle uploaded whole is mirrored; one whose manifest names another model is refused whole."""
    store = RemoteStore.from_settings(remote_settings(tmp_path / "cache"))
    assert store is not None
    store.sync()
    bucket.put(str(MODEL_STORE / "demo_ranker" / "1"), f"{BUCKET}/model_store/demo_ranker/7", recursive=True)
    bucket.pipe_file(f"{BUCKET}/model_store/other/1/manifest.json", b'{"model_sha256": "00"}')
    bucket.pipe_file(f"{BUCKET}/model_store/other/1/model.onnx", b"not a model")
    updated = store.sync()
    cache = tmp_path / "cache" / "model_store"
    assert "demo_ranker/7/model.onnx" in updated and (cache / "demo_ranker" / "7" / "manifest.json").is_file()
    assert not (cache / "other").exists() or not any((cache / "other").rglob("*.*"))
    assert set(store.mirrors[0].refused) == {"other/1/manifest.json", "other/1/model.onnx"}


def test_an_emptied_store_does_not_empty_the_cache(bucket: Any, tmp_path: Path) -> None:
    store = RemoteStore.from_settings(remote_settings(tmp_path / "cache"))
    assert store is not None
    store.sync()
    bucket.rm(f"{BUCKET}/policies", recursive=True)
    assert store.sync() == []  # logged, skipped
    assert (tmp_path / "cache" / "policies" / "home" / "active").read_text() == "1\n"


def test_write_text_atomic_writes_objects_and_files(bucket: Any, tmp_path: Path) -> None:
    write_text_atomic(f"s3://{BUCKET}/policies/home/rollout.yaml", "generation: 3\n")
    assert bucket.cat_file(f"{BUCKET}/policies/home/rollout.yaml") == b"generation: 3\n"
    write_text_atomic(tmp_path / "home" / "rollout.yaml", "generation: 4\n")
    assert (tmp_path / "home" / "rollout.yaml").read_text() == "generation: 4\n"
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["rollout.yaml"]  # no temp file left


def test_a_uri_store_without_a_cache_folder_is_refused() -> None:
    with pytest.raises(ValueError, match="FUSIONRANK_STORE_CACHE must name a local folder"):
        Settings(model_store="s3://bucket/model_store", policies=str(POLICIES))


ROLLOUT_KEY = f"{BUCKET}/policies/home/{ROLLOUT_FILE}"


def test_two_replicas_racing_on_s3_exactly_one_write_wins(
    bucket: Any, tmp_path: Path, sample_request: dict[str, Any]
) -> None:
    """Two replicas (own caches, so no shared lock) activate at once: one conditional PUT wins, the other 409."""
    admins = {"alice": ADMIN_TOKEN, "bob": ADMIN_TOKEN[::-1]}
    settings = [remote_settings(tmp_path / name, admin_tokens=admins) for name in ("a", "b")]
    with TestClient(create_app(settings[0])) as a, TestClient(create_app(settings[1])) as b:
        barrier = threading.Barrier(2)
        results: dict[str, Any] = {}

        def activate(name: str, client: TestClient) -> None:
            barrier.wait()
            results[name] = client.post(
                "/admin/policies/home/activate", json={"version": "2"}, params={"reason": f"race {name}"},
                headers={"authorization": f"Bearer {admins[name]}"})

        threads = [threading.Thread(target=activate, args=(n, c)) for n, c in (("alice", a), ("bob", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = {name: r.status_code for name, r in results.items()}
        assert sorted(statuses.values()) == [200, 409], {n: r.text for n, r in results.items()}
        winner = next(n for n, code in statuses.items() if code == 200)
        loser = next(n for n, code in statuses.items() if code == 409)
        assert "now rollout generation 1" in results[loser].json()["error"]["message"]
        stored = parse_declared(bucket.cat_file(ROLLOUT_KEY), ROLLOUT_KEY)
        assert (stored.generation, stored.changed_by, stored.reason) == (1, winner, f"race {winner}")
        clients = {"alice": a, "bob": b}
        assert score(clients[winner], sample_request)["versions"]["policy_version"] == "2"
        # The loser served nothing new; its next pass mirrors the winner's file and serves it.
        assert score(clients[loser], sample_request)["versions"]["policy_version"] == "1"
        clients[loser].app.state.policy_watcher.poll_once()  # type: ignore[attr-defined]
        assert score(clients[loser], sample_request)["versions"]["policy_version"] == "2"
        rollout = clients[loser].get("/admin/rollouts/home", headers={"authorization": f"Bearer {admins[loser]}"})
        assert rollout.json()["serving_generation"] == 1


def test_a_writer_that_read_an_older_object_gets_409_and_the_store_keeps_the_winner(
    bucket: Any, tmp_path: Path
) -> None:
    """If-Match: two writers read generation 1 (same ETag); the second PUT names an ETag that is gone."""
    triple = RolloutTriple(model="demo_ranker", model_version="1", calibration_version="1", policy_version="1")
    files = [DeclaredFiles(tmp_path / name, f"s3://{BUCKET}/policies") for name in ("a", "b")]
    for folder in ("a", "b"):
        (tmp_path / folder / "home").mkdir(parents=True)
    first = RolloutState(surface="home", generation=1, active=triple, changed_by="setup")
    with files[0].writing("home") as file:
        assert file.current is None
        file.write(first)  # If-None-Match: * on an absent object
    with files[0].writing("home") as a, files[1].writing("home") as b:
        assert a.current == b.current == first
        a.write(first.model_copy(update={"generation": 2, "changed_by": "a"}))
        with pytest.raises(Conflict, match=r"read at generation 1, now rollout generation 2"):
            b.write(first.model_copy(update={"generation": 2, "changed_by": "b"}))
    stored = parse_declared(bucket.cat_file(ROLLOUT_KEY), ROLLOUT_KEY)
    assert (stored.generation, stored.changed_by) == (2, "a")
    assert not (tmp_path / "b" / "home" / ROLLOUT_FILE).exists()  # the loser's mirror is untouched too
    # A create that finds the object already there is refused as well (If-None-Match: *).
    bucket.rm(ROLLOUT_KEY)
    with files[0].writing("home") as a, files[1].writing("home") as b:
        a.write(first)
        with pytest.raises(Conflict, match="now rollout generation 1"):
            b.write(first.model_copy(update={"changed_by": "b"}))


def test_a_store_without_conditional_writes_refuses_admin_writes(tmp_path: Path) -> None:
    """Only S3 gets the conditional PUT; any other URI (gs://, here fsspec's memory://) is refused, not raced."""
    (tmp_path / "home").mkdir()
    files = DeclaredFiles(tmp_path, "memory://fusionrank/policies")
    with pytest.raises(Conflict, match="need a conditional write"), files.writing("home"):
        pass
