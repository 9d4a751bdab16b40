"""Calibration acceptance at scale: held-out ratio and Field-RCE of every task of the shipped bundle.

The calibration issue is done when, on held-out demo data, every task's calibrated calibration ratio
lies in [0.97, 1.03] and Field-RCE drops by at least half. `report` (~0.04 % positive) needs about
10,000 held-out positives to pin its ratio to ±1 % (1/√positives), i.e. ~55M impressions of the
last week: this benchmark generates them chunk by chunk, scores them with the shipped
model_store/demo_ranker/1/model.onnx (the service's encoder and runner), fits on days 21-25 with the
code of `calibrate fit` and measures on days 25-28 from binned sums, never holding the rows
(`app.offline.calibration.acceptance`). Prints a table and appends it to bench/RESULTS.md.
Usage: python bench/calibration_acceptance.py [--rows 60000000] [--chunk-rows 250000] [--seed 7]
       [--calibration-out FILE] [--no-progress] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.offline.calibration.acceptance import (
    FIT_DAYS,
    HELD_OUT_DAYS,
    RATIO_BAND,
    AcceptanceConfig,
    AcceptanceResult,
    run_acceptance,
)
from bench.common import BUNDLE, append_results, load_average, machine, now


def table(result: AcceptanceResult) -> list[str]:
    features = result.segments
    header = ("| task | held-out observed rows | held-out positives (±1/√n) | fit positives | ratio raw → calibrated"
              f" | in [{RATIO_BAND[0]}, {RATIO_BAND[1]}] | fit-split ratio, calibrated |"
              + "".join(f" Field-RCE {f} raw → cal. (÷) |" for f in features) + " Field-RCE halved |")
    lines = [header, "|---|---:|---:|---:|---:|:-:|---:|" + "---:|" * len(features) + ":-:|"]
    for task, m in result.metrics.items():
        in_band, halved = result.passes(task)
        noise = 100 / math.sqrt(m.positives) if m.positives > 0 else float("nan")
        fit = result.fit_metrics[task]
        cells = [task, f"{m.count:,.0f}", f"{m.positives:,.0f} (±{noise:.1f} %)", f"{fit.positives:,.0f}",
                 f"{m.ratio_before:.3f} → {m.ratio_after:.4f}", "yes" if in_band else "**no**",
                 f"{fit.ratio_after:.4f}"]
        for f in features:
            before, after = m.field_rce_before[f], m.field_rce_after[f]
            cells.append(f"{before:.3f} → {after:.4f} (÷{before / after:.0f})" if after > 0 else f"{before:.3f} → 0")
        cells.append("yes" if all(halved.values()) else "**no**")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000_000, help="impressions generated in days 21-28")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="rows generated and scored at a time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--calibration-out", type=Path, help="also write the fitted calibration file here")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args()
    if args.rows < 1 or args.chunk_rows < 1:
        parser.error("--rows and --chunk-rows must be positive")
    load_before = load_average()
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_acceptance(BUNDLE, AcceptanceConfig(rows=args.rows, chunk_rows=args.chunk_rows, seed=args.seed,
                                                     show_progress=not args.no_progress))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.calibration_out is not None:
        args.calibration_out.write_text(json.dumps(result.calibration.model_dump(mode="json"), indent=2) + "\n")
    verdict = all(result.passes(t)[0] and all(result.passes(t)[1].values()) for t in result.metrics)
    lines = [
        f"machine: {machine()}  ",
        f"date: {now()}; load average (1 / 5 / 15 min) at the start {load_before}, at the end {load_average()}"
        " (the machine is shared: CPU time is the steadier figure)  ",
        f"model: {BUNDLE.relative_to(BUNDLE.parents[2])}/model.onnx (shipped), scored with the service's encoder"
        " and onnxruntime runner  ",
        f"data: {result.rows:,} impressions of the demo distribution in days {FIT_DAYS[0]:g}-{HELD_OUT_DAYS[1]:g}"
        f" (seed {args.seed}, chunks of {args.chunk_rows:,}; as many as a {result.rows * 4:,}-row 28-day demo log"
        f" has there); fit on days {FIT_DAYS[0]:g}-{FIT_DAYS[1]:g} = {result.fit_rows:,} rows, held out days"
        f" {HELD_OUT_DAYS[0]:g}-{HELD_OUT_DAYS[1]:g} = {result.held_out_rows:,} rows  ",
        "calibration: global Platt + per-value corrections for "
        f"{', '.join(result.segments)} (shrinkage 30), the code of `calibrate fit`; metrics from the held-out"
        " per-(cell, logit bin) sums  ",
        f"wall {seconds:.0f} s, CPU {cpu:.0f} s, peak RSS {peak_mb:.0f} MB; acceptance"
        f" ({RATIO_BAND[0]} ≤ ratio ≤ {RATIO_BAND[1]} and Field-RCE at most half, every task):"
        f" {'met' if verdict else 'NOT met'}",
        "",
        *table(result),
    ]
    print("\n".join(lines))
    if not args.no_record:
        append_results("bench/calibration_acceptance.py", lines)


if __name__ == "__main__":
    main()
