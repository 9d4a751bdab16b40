"""A first-stage bundle for cascade tests without torch: a copy of the demo bundle under another name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import write_policy


def copy_bundle_as(store: Path, name: str, version: str = "1") -> Path:
    """`store/<name>/<version>`: the demo bundle's files with its manifest and calibration renamed."""
    target = store / name / version
    shutil.copytree(store / "demo_ranker" / "1", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["name"], manifest["version"] = name, version
    (target / "manifest.json").write_text(json.dumps(manifest))
    for path in (target / "calibration").glob("*.json"):
        calibration = json.loads(path.read_text())
        calibration["model"].update(name=name, version=version)
        path.write_text(json.dumps(calibration))
    return target


def cascade_policy(policies: Path, version: str, **cascade: Any) -> Path:
    """`policies/home/<version>.yaml`: the shipped version 1 with a first stage on `demo_light/1`."""
    spec = {"model": {"name": "demo_light", "version": "1"}, "calibration_version": "1", "top_n": 25, **cascade}
    return write_policy(policies, version, lambda p: p.update(cascade=spec))
