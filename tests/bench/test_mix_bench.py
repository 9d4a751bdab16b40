"""bench/mix_bench.py measures the served-mix accounting on a request that fills the slate."""

from __future__ import annotations

from bench import mix_bench


def test_the_bench_times_every_case_on_a_full_slate() -> None:
    figures = mix_bench.measure(300, 30, 3)  # asserts that 30 candidates were answered
    assert figures.keys() == {"score()", "mix_counts()", "ServedMix.observe()"}
    assert all(0 < low <= median for median, low in figures.values())
    assert figures["ServedMix.observe()"][0] < figures["score()"][0]
