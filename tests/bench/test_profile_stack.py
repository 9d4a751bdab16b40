"""bench/profile_stack.py drives the real app in process, with and without the scoring work."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import uvloop

from bench import profile_stack


@pytest.mark.parametrize("body", ["rows", "arrow"])
def test_stack_cost_is_measured_against_the_whole_request(tmp_path: Path, body: str) -> None:
    profile = tmp_path / "stack.prof"
    args = argparse.Namespace(model="demo", format=body, requests=5, profile=str(profile))
    lines = uvloop.run(profile_stack._measure(args))
    whole, stack, share = (cell.strip() for cell in lines[-1].strip("|").split("|"))
    assert 0 < float(stack) < float(whole)  # the constant answer costs less than the real work
    assert share.endswith("%")
    assert profile.stat().st_size > 0
