"""scripts/movielens100k.py on a tiny MovieLens-shaped data set (no download): the tuning logs it
writes are what `tune` and `simulate` read, and the example policy pair replays on them."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.artifacts.loading import load_calibration
from app.cli.tuning_runs import run_simulate
from app.offline.tuning import NdcgGapTuner, read_candidate_log

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "movielens100k.py"
POLICIES = sorted((ROOT / "docs" / "examples" / "movielens" / "movies").glob("*.yaml"))
DEMO_BUNDLE = ROOT / "model_store" / "demo_ranker" / "1"
TEST_START = datetime(1998, 3, 31, tzinfo=UTC).timestamp()  # the spec's test_start


@pytest.fixture(scope="module")
def movielens() -> ModuleType:
    spec = importlib.util.spec_from_file_location("movielens100k", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raw_tables(genres: tuple[str, ...], seed: int = 5) -> dict[str, pa.Table]:
    """The three wheel tables, shaped like MovieLens-100k: 40 users, 80 movies, ratings from
    February (train) to April 1998 (validation from 7 March, test from 31 March)."""
    rng = np.random.default_rng(seed)
    users, movies = 40, 80
    flags = rng.random((movies, len(genres))) < 0.2
    years = rng.integers(1930, 1999, movies)
    release = [None if m == 7 else f"01-Jan-{y}" for m, y in enumerate(years.tolist())]  # one unknown date
    movie_columns: dict[str, object] = {"movie_id": np.arange(1, movies + 1), "release_date": release}
    movie_columns.update({g: flags[:, j].astype(np.int64) for j, g in enumerate(genres)})
    day = 86_400
    rows: list[tuple[int, int, int, int]] = []
    for user in range(1, users + 1):
        taste = rng.normal()
        for start, count in ((datetime(1998, 2, 10, tzinfo=UTC), 30), (datetime(1998, 3, 15, tzinfo=UTC), 12),
                             (datetime(1998, 4, 5, tzinfo=UTC), int(rng.integers(2, 70)))):
            seen = rng.choice(movies, size=count, replace=False) + 1
            base = int(start.timestamp()) + int(rng.integers(0, 3)) * day
            for i, movie in enumerate(seen.tolist()):
                rating = int(np.clip(np.round(3.5 + taste + rng.normal()), 1, 5))
                rows.append((user, movie, rating, base + 60 * i))
    ratings = np.array(rows, dtype=np.int64)
    return {
        "ratings": pa.table({"user_id": ratings[:, 0], "movie_id": ratings[:, 1], "rating": ratings[:, 2],
                             "timestamp": ratings[:, 3]}),
        "users": pa.table({
            "user_id": np.arange(1, users + 1), "age": rng.integers(15, 70, users),
            "gender": rng.choice(["M", "F"], users).tolist(),
            "occupation": rng.choice(["student", "engineer", "artist"], users).tolist(),
            "zip_code": [f"{rng.integers(0, 99999):05d}" if u % 9 else "T8H1N" for u in range(users)],
        }),
        "movies": pa.table(movie_columns),
    }


def _logits(rows: pa.Table) -> np.ndarray:
    """A stand-in for the exported model [R, 3]: the shrunk history means say how much a user likes a
    movie, weighed differently per task (tasks that rank identically would leave nothing to tune)."""
    user = rows.column("user_prior_mean").to_numpy() - 3.5
    movie = rows.column("movie_prior_mean").to_numpy() - 3.5
    drama = rows.column("genre_drama").to_numpy()
    return np.stack([0.2 + user + 2 * movie, -1.2 + 2 * user + movie + drama, -1.6 - user - movie - drama], axis=1)


@pytest.fixture(scope="module")
def written(movielens: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    folder = tmp_path_factory.mktemp("movielens")
    data = movielens.prepare(_raw_tables(movielens.GENRES), folder / "ml100k_log.parquet")
    # A few hundred ratings: the held-out users hold a handful of positives, too few for the default floor.
    logs = movielens.write_logs(data, folder / "tuning", _logits, model=None, min_holdout_positives=0)
    return logs, pq.read_table(data)


def test_logs_hold_calibrated_test_ratings_in_the_tuning_format(
    written: tuple[Path, pa.Table], movielens: ModuleType
) -> None:
    logs, prepared = written
    log = read_candidate_log(logs)
    assert sorted(log.tasks) == ["hide", "like", "love"]
    assert log.sizes.min() >= movielens.MIN_CANDIDATES and log.sizes.max() <= movielens.MAX_CANDIDATES
    # a long day of ratings is cut into parts of balanced size, not a full part and a stub
    parts = [g for g in log.group_ids.tolist() if g.endswith("/1")]
    assert parts, "the synthetic data has a day with more than MAX_CANDIDATES ratings"
    table = pq.read_table(logs)
    assert (table.column("timestamp").to_numpy() >= TEST_START).all()  # held-out ratings only
    for column in ("category", "creator_id", "is_new", "gender", "age_band", "user_id"):
        assert column in log.columns
    assert set(log.columns["creator_id"].tolist()) <= {f"{d}s" for d in range(1920, 2000, 10)} | {"unknown"}

    # labels are the ratings' own: like = rating >= 4, love = 5, hide <= 2
    ratings = {(u, m): r for u, m, r in zip(prepared.column("user_key").to_pylist(),
                                             prepared.column("movie_id").to_pylist(),
                                             (prepared.column("like").to_numpy() + prepared.column("love").to_numpy()
                                              - prepared.column("hide").to_numpy()).tolist(), strict=True)}
    keys = zip(table.column("user_id").to_pylist(), table.column("candidate_id").to_pylist(), strict=True)
    expected_like = [float(ratings[(str(u), m)] >= 1) for u, m in keys]
    assert table.column("label_like").to_pylist() == expected_like

    # the predictions went through the calibration `calibrate fit` wrote (Platt: monotone, not the raw sigmoid)
    calibration = load_calibration(logs.parent / f"{movielens.CALIBRATION_VERSION}.json")
    assert set(calibration.tasks) == {"like", "love", "hide"}
    z = table.column("logit_love").to_numpy()
    p = table.column("p_love").to_numpy()
    assert np.all(np.diff(p[np.argsort(z)]) >= -1e-12)
    assert not np.allclose(p, 1.0 / (1.0 + np.exp(-z)), atol=1e-3)


def test_tuners_and_the_example_policies_run_on_the_logs(written: tuple[Path, pa.Table], tmp_path: Path) -> None:
    logs, _ = written
    log = read_candidate_log(logs, attributes=False)
    tuner = NdcgGapTuner(targets={"like": 0.4, "love": 0.4, "hide": 0.2}, negative={"hide"}).fit(log)
    assert tuner.error_ <= 0.02
    assert [p.name for p in POLICIES] == ["1.yaml", "2.yaml"]
    result = run_simulate(logs, POLICIES, grid=[], out=tmp_path / "sim", k=10, top_k=None, context=[],
                          segments=["gender", "age_band"], mix=["category", "creator_id"], x=None, y=None,
                          emit_policy=True, pick=None, emit_version=None, show_progress=False)
    assert set(result["metrics"]) == {"movies/1", "movies/2"}
    assert not [m for m in result["metrics"]["movies/1"] if m.startswith("filtered:")]
    assert {"filtered:likely_dislike", "filtered:genre_variety", "filtered:decade_variety"} <= set(
        result["metrics"]["movies/2"])
    assert set(result["segments"]["gender"]["movies/1"]) == {"M", "F"}
    assert json.loads((tmp_path / "sim" / "results.json").read_text())["emitted_policy"]


def test_bundle_logits_encode_rows_as_the_service_does(movielens: ModuleType) -> None:
    """The demo bundle's golden batch: its sample request as a table gives the recorded logits."""
    sample = json.loads((DEMO_BUNDLE / "sample_request.json").read_text())
    rows = [{**sample["context"]["features"], **c["features"]} for c in sample["candidates"]]
    names = sorted({n for r in rows for n in r})
    table = pa.table({n: [r.get(n) for r in rows] for n in names})
    expected = np.array(json.loads((DEMO_BUNDLE / "golden.json").read_text())["logits"])
    assert np.abs(movielens.bundle_logits(DEMO_BUNDLE, batch_rows=7)(table) - expected).max() < 1e-5
