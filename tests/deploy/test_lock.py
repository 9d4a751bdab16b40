"""requirements/*.lock: what the image installs agrees with pyproject.toml, every pin hash-checked.

The locks are written by scripts/lock.sh (uv pip compile); the Dockerfile installs them with
`pip install --require-hashes --no-deps`, so a dependency missing from the lock fails the build and a pin
outside pyproject's range would ship untested. Rerun scripts/lock.sh when these tests fail.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.conftest import ROOT

LOCKS = ROOT / "requirements"
FIX = "run scripts/lock.sh and commit requirements/"


def pins(lock: Path) -> dict[str, tuple[Version, list[str]]]:
    """Package -> (pinned version, sha256 hashes) of one lock file."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    found: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"{lock.name}: {line!r} is not `name==version --hash=sha256:...`: {FIX}"
        name = canonicalize_name(match.group(1))
        assert name not in found, f"{lock.name}: {name} pinned twice: {FIX}"
        found[name] = (Version(match.group(2)), re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
    return found


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def check(requirements: list[str], lock: Path) -> list[str]:
    pinned = pins(lock)
    problems = []
    for spec in requirements:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            problems.append(f"{requirement.name} ({spec}) is not in {lock.name}")
        elif requirement.specifier and not requirement.specifier.contains(pinned[name][0], prereleases=True):
            problems.append(f"{lock.name} pins {name}=={pinned[name][0]}, outside pyproject's {spec!r}")
    return problems


def test_every_service_dependency_is_pinned_within_its_range() -> None:
    dependencies = pyproject()["project"]["dependencies"]  # type: ignore[index]
    problems = check(dependencies, LOCKS / "service.lock")
    assert not problems, "\n".join(problems) + f"\n{FIX}"


def test_the_build_lock_pins_the_build_backend_and_pip() -> None:
    requires = pyproject()["build-system"]["requires"]  # type: ignore[index]
    problems = check([*requires, "pip"], LOCKS / "build.lock")
    assert not problems, "\n".join(problems) + f"\n{FIX}"


@pytest.mark.parametrize("name", ["service.lock", "build.lock"])
def test_every_pin_has_hashes_and_the_lock_names_its_command(name: str) -> None:
    lock = LOCKS / name
    pinned = pins(lock)
    assert pinned, f"{lock} pins nothing: {FIX}"
    assert not [p for p, (_, hashes) in pinned.items() if not hashes], f"pins without --hash in {name}: {FIX}"
    assert "#    scripts/lock.sh" in lock.read_text(), f"{name} was not written by scripts/lock.sh: {FIX}"


def test_no_training_or_dev_package_reaches_the_service_lock() -> None:
    pinned = pins(LOCKS / "service.lock")
    for heavy in ("torch", "onnx", "pyspark", "pandas", "scipy", "matplotlib", "pytest", "pip", "setuptools"):
        assert heavy not in pinned, f"{heavy} is in the service lock: it belongs to an extra, not the image"


def test_the_check_finds_a_pin_outside_the_range(tmp_path: Path) -> None:
    lock = tmp_path / "service.lock"
    lock.write_text("numpy==1.25.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert check(["numpy>=1.26,<3", "orjson>=3.10,<4"], lock) == [
        "service.lock pins numpy==1.25.0, outside pyproject's 'numpy>=1.26,<3'",
        "orjson (orjson>=3.10,<4) is not in service.lock",
    ]
