"""Write the synthetic demo log as a Parquet file that `fusionrank train` reads with a spec.

Same generator as `fusionrank demo` (`app.offline.synthetic.generator`), stored as an impression log would be:
one row per impression with its event time, raw features, 0/1 outcomes and candidate attributes.
Immature outcomes are stored as 0 (the outcome had not arrived when the log was cut); the spec's
`label_window_hours` masks them again. `hide_logged` is 0 on rows whose hide event was lost.

    python -m app.offline.synthetic.log_file OUT.parquet [--rows N] [--seed S] [--position-bias B]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.offline.synthetic import generator as syn

__all__ = ["demo_table", "log_table", "write_demo_log", "write_log_table"]


def demo_table(rows: int, seed: int, position_bias: float = 0.0) -> pa.Table:
    """The log of `rows` impressions generated with `seed` (and a known position bias), as a table."""
    return log_table(syn.generate_log(rows, seed, position_bias=position_bias))


def log_table(log: syn.DemoLog) -> pa.Table:
    """A generated log as an impression table (see the module docstring)."""
    start_us = int(syn.START.timestamp() * 1e6)
    columns: dict[str, pa.Array | np.ndarray] = {
        "request_id": log.group_id,
        "item_id": log.candidate_id,
        "user_id": log.user_id,
        "event_time": pa.array(
            start_us + np.round(log.event_hours * 3.6e9).astype(np.int64), pa.timestamp("us", tz="UTC")
        ),
    }
    for j, name in enumerate(syn.NUMERIC):
        columns[name] = log.numeric[:, j]
    for name in syn.CATEGORICAL:
        columns[name] = pa.array(log.categorical[name].tolist(), pa.string())
    for t, task in enumerate(syn.TASKS):
        columns[task] = log.labels[:, t].astype(np.int8)
    hide = syn.TASKS.index("hide")
    # the generator's hide mask = maturity x logged; the log keeps the "logged" part
    mature = log.event_hours + syn.LABEL_WINDOW_HOURS["hide"] <= syn.DAYS * 24.0 + 48.0
    columns["hide_logged"] = (log.mask[:, hide] > 0) | ~mature
    columns["creator_id"] = pa.array(log.creator_id.tolist(), pa.string())
    columns["sponsored"] = log.sponsored
    columns["margin"] = log.margin
    if log.position is not None and log.true_click is not None:  # generated with a position bias
        columns["position"] = log.position
        columns["true_p_click"] = log.true_click
    return pa.table(columns)


def write_demo_log(
    path: Path, rows: int = 300_000, seed: int = 7, row_group_size: int = 50_000, position_bias: float = 0.0
) -> Path:
    return write_log_table(path, demo_table(rows, seed, position_bias), row_group_size)


def write_log_table(path: Path, table: pa.Table, row_group_size: int = 50_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--position-bias", type=float, default=0.0,
                        help="log a known position bias: click logit - B * log2(1 + position), with columns"
                             " `position` and `true_p_click`")
    args = parser.parse_args()
    print(write_demo_log(args.out, args.rows, args.seed, position_bias=args.position_bias))


if __name__ == "__main__":
    main()
