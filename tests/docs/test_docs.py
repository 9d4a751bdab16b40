"""The README and the docs site: short README, no tracker wording, a strict build, settings table."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docs_settings() -> ModuleType:
    return _load("docs_settings")


def test_readme_is_short_and_says_how_to_put_fusionrank_on_path() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "source .venv/bin/activate" in text and "export PATH=$PWD/.venv/bin:$PATH" in text
    assert "scripts/serve.sh" in text and "scripts/test.sh" in text


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_extras_are_installed_from_the_checkout(path: Path) -> None:
    # `pip install 'fusionrank[offline]'` needs a published package; from a clone it is `pip install -e '.[offline]'`.
    assert not re.search(r"pip install '?fusionrank\[", path.read_text(encoding="utf-8"))


def test_readme_counts_the_sample_requests_ineligible_candidates() -> None:
    sample = json.loads((ROOT / "model_store" / "demo_ranker" / "1" / "sample_request.json").read_text())
    ineligible = sum(1 for c in sample["candidates"] if c.get("attributes", {}).get("eligible") is False)
    said = re.search(r"(\d+) of them marked\s+ineligible", README.read_text(encoding="utf-8"))
    assert said is not None, "README: say how many of the sample request's candidates are ineligible"
    assert int(said.group(1)) == ineligible, f"README says {said.group(1)}, the sample request has {ineligible}"


# Words that belong to the project's tracker or to a work session, not to a manual.
TRACKER = re.compile(
    r"\bthe issue\b|\bissue #?\d+|\bthe issue's\b|DESIGN principle|\bprinciple \d\b|\bfirst plan\b|\bthis PR\b"
    r"|\bthis change\b|\bthis session\b|\bthe brief\b|\bthe task asks\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_tracker_wording(path: Path) -> None:
    if path.name == "results.md":  # bench/RESULTS.md, the benchmarks' own log
        return
    hits = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
            if TRACKER.search(line)]
    assert not hits, "\n".join(hits)


def test_settings_table_lists_every_setting_with_type_default_and_description(docs_settings: ModuleType) -> None:
    from app.settings import Settings

    table = docs_settings.settings_table()
    for name in Settings.model_fields:
        row = next((line for line in table.splitlines() if f"`FUSIONRANK_{name.upper()}`" in line), None)
        assert row is not None, name
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), row
    assert "| `FUSIONRANK_MAX_IN_FLIGHT` | `int` | `64` |" in table
    assert "| `FUSIONRANK_MODEL_STORE` | `Path` | required |" in table
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert docs_settings.on_page_markdown(page, None, None, None).count("`FUSIONRANK_") >= len(Settings.model_fields)


def test_a_group_comment_describes_only_the_settings_it_names(docs_settings: ModuleType) -> None:
    rows = {env: description for env, _, _, description in docs_settings.settings_rows()}
    psi = rows["`FUSIONRANK_DRIFT_PSI_INTERVAL_SECONDS`"]
    assert rows["`FUSIONRANK_DRIFT_PSI_WINDOW_SLOTS`"] == psi  # the comment names `slots`
    assert rows["`FUSIONRANK_ADMIN_TOKENS`"] != psi  # declared next, described elsewhere
    assert rows["`FUSIONRANK_MAX_CANDIDATES`"] != rows["`FUSIONRANK_SCORE_THREADS`"]


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**_env(), "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").read_text().count("FUSIONRANK_MAX_IN_FLIGHT") >= 1


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_readme_links_resolve() -> None:
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    local = [t for t in targets if "://" not in t]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
