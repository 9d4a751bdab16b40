"""Every shell walkthrough of the README and docs/ runs from a fresh copy of the repository, and the
outputs the docs show are what the commands print (scripts/docs_outputs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_outputs", ROOT / "scripts" / "docs_outputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_outputs"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


runner = _runner()
WALKS = runner.walkthroughs(runner.doc_files())


def _param(walk: Any) -> Any:
    return pytest.param(walk, id=walk.key, marks=[pytest.mark.slow] if walk.slow else [])


def test_every_bash_block_is_run_or_skipped_with_a_reason() -> None:
    assert runner.unmarked_blocks(runner.doc_files()) == []


def test_the_readme_and_the_operating_pages_have_walkthroughs() -> None:
    keys = {w.key for w in WALKS}
    for key in ("README.md:readme", "docs/policies.md:ops", "docs/rollout.md:rollout", "docs/monitoring.md:feedback"):
        assert key in keys
    readme = next(w for w in WALKS if w.key == "README.md:readme")
    assert len(readme.outputs) == 2  # the sample answer and the bad request's error


@pytest.mark.parametrize("walk", [_param(w) for w in WALKS])
def test_walkthrough_runs_and_prints_what_the_docs_show(walk: Any) -> None:
    outputs = runner.run_walkthrough(walk)
    problems, _ = runner.check_outputs(walk, outputs)
    assert not problems, "\n".join(problems) + "\n(fix the docs, or run scripts/docs_outputs.py --write)"


def test_json_outputs_compare_values_with_floats_to_1e_9() -> None:
    shown = {"a": 0.1234567890, "b": [1, 2], "at": "…"}
    assert runner.compare(shown, {"a": 0.1234567890004, "b": [1, 2], "at": "2026-12-06"}, subset=False) == []
    assert runner.compare(shown, {"a": 0.12346, "b": [1, 2], "at": "x"}, subset=False)
    assert runner.compare(shown, {"a": 0.1234567890, "b": [1, 2, 3], "at": "x"}, subset=False)
    assert runner.compare(shown, {"a": 0.1234567890, "b": [1, 2, 3], "at": "x", "c": 1}, subset=True) == []
    assert runner.compare({"b": [2]}, {"b": [1, 2]}, subset=True)  # a shortened list is a prefix
    assert runner.compare({"ok": True}, {"ok": 1}, subset=False)


def test_a_shown_output_that_differs_is_reported_and_rewritten(tmp_path: Path) -> None:
    page = tmp_path / "probe.md"
    page.write_text(
        "<!-- docs-run: probe -->\n```bash\necho '{\"n\": 2, \"at\": \"now\"}'\necho done\n```\n\n"
        "<!-- docs-output: probe -->\n```text\nnot this\n```\n"
    )
    (walk,) = runner.walkthroughs([page])
    outputs = runner.run_walkthrough(walk, timeout=60)
    problems, rewrites = runner.check_outputs(walk, outputs)
    assert problems and "not this" in problems[0]
    assert list(rewrites.values()) == ['{"n": 2, "at": "now"}\ndone']
