"""`calibrate fit` at log scale with each engine: wall time, peak memory, and how time grows with rows.

Generates synthetic predictions Parquet files (the generator of bench/calibration_fit_bench.py: 4 tasks,
2 segment features, 5% masked; written in 1M-row chunks) of each row count unless they exist, then
runs the real CLI, `python -m app.cli calibrate fit --engine local|spark`, as a fresh process per
run. Peak memory is the largest sum of RSS over the command's whole process tree (the CLI, and for
Spark its JVM and Python workers), sampled every 0.2 s from /proc. Spark runs `local[N]` on this
machine (the benchmark measures the engine's overhead and scaling here, not a cluster). Prints a
table and appends it, with machine and date, to bench/RESULTS.md.
Usage: python bench/offline_scale.py [--rows 10000000,50000000] [--engines local,spark] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.calibration_fit_bench import write_file
from bench.common import ROOT, append_results, machine, now


def tree_rss_mb(pid: int) -> float:
    """Sum of VmRSS over `pid` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parent = int(fields.get("PPid", "0").strip())
        children.setdefault(parent, []).append(int(entry.name))
        rss[int(entry.name)] = float(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0.0)
        stack.extend(children.get(current, []))
    return total


def run(command: list[str], timeout_s: float) -> tuple[float, float, int]:
    """(wall s, peak tree RSS MB, exit code) of one command."""
    peak = [0.0]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(process.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        print(output[-3000:])
    return seconds, peak[0], process.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="10000000,50000000")
    parser.add_argument("--engines", default="local,spark")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--holdout", type=float, default=0.05)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    results = []
    for rows in [int(r) for r in args.rows.split(",")]:
        path = args.dir / f"fusionrank_scale_{rows}.parquet"
        generated = "reused"
        if not path.exists():
            t0 = time.perf_counter()
            write_file(path, rows)
            generated = f"generated in {time.perf_counter() - t0:.0f} s"
        size_mb = path.stat().st_size / 1e6
        files = {}
        for engine in args.engines.split(","):
            out = args.dir / f"fusionrank_scale_{rows}_{engine}.json"
            command = [sys.executable, "-m", "app.cli", "calibrate", "fit", "--predictions", str(path), "--out",
                       str(out), "--version", "bench", "--segment", "user_tenure", "--segment", "item_type",
                       "--holdout", str(args.holdout), "--no-progress", "--engine", engine]
            if engine == "spark":
                command += ["--spark-master", args.spark_master, "--spark-conf", "spark.ui.enabled=false",
                            "--spark-conf", f"spark.driver.memory={args.driver_memory}"]
            load_before = os.getloadavg()[0]
            seconds, peak_mb, code = run(command, args.timeout)
            load = f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"
            status = "ok" if code == 0 else f"failed (exit {code}, timeout {args.timeout:.0f} s)"
            if code == 0:
                files[engine] = json.loads(out.read_text())
            print(f"{rows:,} rows, {engine}: {seconds:.1f} s, peak {peak_mb:.0f} MB, load {load}, {status}", flush=True)
            results.append((rows, engine, seconds, peak_mb, status, size_mb, generated, load))
        if {"local", "spark"} <= set(files):
            a, b = (files[e]["tasks"]["click"]["calibrator"] for e in ("local", "spark"))
            print(f"click calibrator local {a} spark {b}")
    base = {e: next((s for r, en, s, *_ in results if en == e), None) for e in args.engines.split(",")}
    first_rows = results[0][0] if results else 1
    lines = [
        f"machine: {machine()}  ",
        f"date: {now()}; synthetic predictions (4 tasks, 2 segment features = 16 cells, 5% masked, 20 rows"
        f" per group_id), `calibrate fit --segment user_tenure --segment item_type --holdout {args.holdout}`"
        f" (platt) as a fresh CLI process; Spark = `--spark-master {args.spark_master}` with"
        f" spark.driver.memory={args.driver_memory} on this machine; peak = largest sum of RSS over the"
        f" command's process tree (CLI + JVM + Python workers); load = 1-minute load average before → after"
        f" each run (the machine is shared with other jobs)",
        "",
        "| rows | Parquet MB | engine | wall s | rows/s | time vs first size | peak RSS MB | load 1 min | status |",
        "|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for rows, engine, seconds, peak_mb, status, size_mb, generated, load in results:
        growth = seconds / base[engine] if base.get(engine) else float("nan")
        lines.append(f"| {rows:,} | {size_mb:.0f} ({generated}) | {engine} | {seconds:.1f} | {rows / seconds:,.0f} |"
                     f" {growth:.2f}x for {rows / first_rows:.0f}x rows | {peak_mb:.0f} | {load} | {status} |")
    print("\n".join(lines))
    append_results("bench/offline_scale.py", lines)


if __name__ == "__main__":
    main()
