"""bench/ranking_bench.py runs (a few calls per step) and prints one row per step without recording."""

from __future__ import annotations

import sys

import pytest

from bench import ranking_bench
from bench.common import RESULTS


def test_ranking_bench_prints_every_step(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    before = RESULTS.read_text()
    monkeypatch.setattr(sys, "argv", ["ranking_bench.py", "--candidates", "200", "--top-k", "20", "--repeat", "3"])
    ranking_bench.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert len(rows) == 1 + len(ranking_bench.CONFIGS) + 4
    assert RESULTS.read_text() == before  # only --record writes
