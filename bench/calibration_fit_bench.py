"""Calibration fit time on a 10-million-row predictions Parquet (4 tasks, 2 segment features).

Writes a synthetic predictions file (in 1M-row chunks, so generating it needs little memory) unless
one with the same row count exists, then times `fit_predictions` end to end: stream the file in
batches, accumulate the sufficient statistics, fit each task's global calibrator and segment
corrections, and compute the held-out before/after metrics. Prints a table and appends it, with
machine and date, to bench/RESULTS.md.
Usage: python bench/calibration_fit_bench.py [--rows N] [--file PATH] [--methods platt,isotonic]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.offline.calibration import FitConfig, PredictionFile, fit_predictions
from app.serving.calibration import sigmoid
from bench.common import append_results, machine, now

TASKS = {"click": (-3.0, 0.05), "purchase": (-5.5, 0.005), "hide": (-4.8, 0.01), "report": (-8.0, 0.0004)}
TENURES = np.array(["new", "casual", "regular", "power"])
TYPES = np.array(["video", "article", "product", "live"])


def write_file(path: Path, rows: int, chunk: int = 1_000_000, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        tenure = rng.integers(0, 4, n)
        item_type = rng.integers(0, 4, n)
        shift = np.array([-0.5, 0.0, 0.1, 0.3])[tenure] + np.array([0.0, -0.3, 0.4, 0.5])[item_type]
        columns: dict[str, object] = {"group_id": np.arange(start, start + n, dtype=np.int64) // 20}
        for task, (base, _) in TASKS.items():
            z = rng.normal(base, 1.2, n)
            columns[f"logit_{task}"] = z
            columns[f"label_{task}"] = (rng.random(n) < sigmoid(0.8 * z - 0.3 + shift)).astype(np.int8)
            columns[f"mask_{task}"] = (rng.random(n) > 0.05).astype(np.int8)
        columns["user_tenure"] = pa.DictionaryArray.from_arrays(tenure.astype(np.int32), TENURES.tolist())
        columns["item_type"] = pa.DictionaryArray.from_arrays(item_type.astype(np.int32), TYPES.tolist())
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--file", type=Path, default=Path("/tmp/fusionrank_bench_predictions.parquet"))
    parser.add_argument("--methods", default="platt,isotonic")
    args = parser.parse_args()
    path: Path = args.file
    generated = "reused"
    if not path.exists() or PredictionFile(path).rows != args.rows:
        t0 = time.perf_counter()
        write_file(path, args.rows)
        generated = f"generated in {time.perf_counter() - t0:.1f} s"
    size_mb = path.stat().st_size / 1e6
    results = []
    for method in args.methods.split(","):
        config = FitConfig(method=method, segments=("user_tenure", "item_type"))  # type: ignore[arg-type]
        t0, c0 = time.perf_counter(), time.process_time()
        outcome = fit_predictions(PredictionFile(path), config, version="bench", show_progress=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        click = outcome.calibration.tasks["click"].metrics
        results.append((method, seconds, cpu, outcome, click.before["calibration_ratio"],
                        click.after["calibration_ratio"]))
        print(f"{method}: {seconds:.1f} s wall, {cpu:.1f} s CPU for {outcome.rows:,} rows")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"machine: {machine()}  ",
        f"date: {now()}; {args.rows:,} rows x 4 tasks (click, purchase, hide, report) + 2 segment features"
        f" (user_tenure, item_type; 16 cells), 5% masked; Parquet {size_mb:.0f} MB ({generated});"
        f" 20% held out by hash of group_id; peak RSS of the process {peak_mb:.0f} MB;"
        f" load average at the end {os.getloadavg()[0]:.1f} (the machine is shared: CPU time is the"
        " steadier figure)",
        "",
        "| method | rows | fit rows | held-out rows | wall s (read + statistics + fit + held-out metrics)"
        " | CPU s | rows/s (wall) | click ratio before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for method, seconds, cpu, outcome, before, after in results:
        lines.append(f"| {method} + segments | {outcome.rows:,} | {outcome.rows - outcome.held_out_rows:,} |"
                     f" {outcome.held_out_rows:,} | {seconds:.1f} | {cpu:.1f} | {outcome.rows / seconds:,.0f} |"
                     f" {before:.3f} → {after:.3f} |")
    print("\n".join(lines))
    append_results("bench/calibration_fit_bench.py", lines)


if __name__ == "__main__":
    main()
