"""bench/stage_profile.py times every stage of a request, and score_bench's sizing table reads its curve."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import stage_profile
from bench.common import segmented_store
from bench.score_bench import FORMATS, SIZES, service_state, sizing


@pytest.mark.parametrize("fmt", ["rows", "arrow"])
def test_every_stage_is_timed_and_the_whole_costs_more_than_the_model(tmp_path: Path, fmt: str) -> None:
    state = service_state(segmented_store(tmp_path, "demo"))
    results = stage_profile.measure(state, fmt, 10, repeats=20)
    assert {"whole request", "ort.run", "decode (envelope, ids, checks)", "metrics + drift",
            "encode answer"} <= results.keys()
    assert all(0 < low <= median for low, median in results.values())
    assert results["whole request"][0] > results["ort.run"][0]
    stage_profile.profile(state, fmt, 10, 5, tmp_path / "out.prof")
    assert (tmp_path / "out.prof").stat().st_size > 0


def test_sizing_is_candidates_per_second_per_core_of_the_curve() -> None:
    curve = {(fmt, n): (1.0, 1.0, 2.0) for fmt in FORMATS for n in SIZES}  # 2 µs of CPU per candidate
    lines = sizing(curve)
    assert len(lines) == 2 + len(SIZES)
    assert lines[2].split("|")[2].strip() == "500,000"
