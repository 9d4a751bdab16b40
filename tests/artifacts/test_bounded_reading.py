"""Every artifact read is bounded (size, nesting depth, alias expansion) and fails as a named ArtifactError.

The red-team file: a policy YAML nested ~500 deep in 991 bytes used to raise RecursionError out of the
loader (start-up exit 3, a watcher failing every pass, admin 500s). Nothing here may raise anything
but an `ArtifactError` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from app.artifacts.loading import (
    json_depth,
    load_calibration,
    load_manifest,
    load_policy,
    read_artifact_bytes,
    read_json,
    read_yaml,
)
from app.artifacts.safe_yaml import MAX_DEPTH, MAX_YAML_BYTES
from app.control.pins import read_pin
from app.control.pointers import read_pointer
from app.errors import ArtifactError

DEEP = 500


def deep_yaml_flow() -> str:
    return "surface: home\nversion: '9'\nx: " + "[" * DEEP + "]" * DEEP + "\n"


def deep_yaml_block() -> str:
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(DEEP)) + f"{'  ' * DEEP}leaf\n"


def deep_json() -> str:
    return '{"a": ' + "[" * DEEP + "]" * DEEP + "}"


@pytest.mark.parametrize("text", [deep_yaml_flow(), deep_yaml_block()], ids=["flow", "block"])
def test_a_deep_policy_yaml_is_a_named_artifact_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "home" / "9.yaml"
    path.parent.mkdir()
    path.write_text(text)
    assert len(deep_yaml_flow()) < 1100  # the red-team size: about a kilobyte
    with pytest.raises(ArtifactError, match=f"nests deeper than {MAX_DEPTH} levels") as caught:
        load_policy(path)
    assert str(path) in caught.value.message and "fix:" in caught.value.message


def test_aliases_cannot_nest_a_document_deeper_than_it_is_written(tmp_path: Path) -> None:
    # Each anchor is 20 levels deep and holds the previous one: written depth ~21, expanded depth 200.
    lines = ["a0: &a0 " + "[" * 20 + "1" + "]" * 20]
    lines += [f"a{i}: &a{i} " + "[" * 20 + f"*a{i - 1}" + "]" * 20 for i in range(1, 10)]
    path = tmp_path / "p.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactError, match="nests deeper"):
        read_yaml(path)


def test_a_billion_laughs_is_refused(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "p.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactError, match="expands to more than"):
        read_yaml(path)


def test_a_long_merge_key_chain_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    lines = ["m0: &m0 {k: 0}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: {i}}}" for i in range(1, 200)]
    path = tmp_path / "p.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactError, match="nests deeper"):
        read_yaml(path)


def test_a_deep_calibration_json_is_a_named_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "3.json"
    path.write_text(deep_json())
    with pytest.raises(ArtifactError, match=f"nests deeper than {MAX_DEPTH} levels") as caught:
        load_calibration(path)
    assert str(path) in caught.value.message


def test_a_deep_manifest_is_a_named_artifact_error(tmp_path: Path) -> None:
    bundle = tmp_path / "demo_ranker" / "1"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text(deep_json())
    with pytest.raises(ArtifactError, match=r"manifest\.json: nests deeper"):
        load_manifest(bundle)


def test_the_depth_scan_skips_strings_and_escapes() -> None:
    assert json_depth(json.dumps({"a": ["[[[", {"b": '\\"[{'}]})) == 3
    assert json_depth("[" * 2000) == 2000  # no recursion, whatever the depth
    assert json_depth("]]]][[") == 2
    assert json_depth("[" * 2000, stop_above=32) == 33  # stops at the first level past the bound


@pytest.mark.parametrize("reader", [read_yaml, read_json])
def test_a_huge_file_is_refused_before_it_is_read_whole(tmp_path: Path, reader: Any) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"#" * (MAX_YAML_BYTES + 1) if reader is read_yaml else b" " * (64 * 1024 * 1024 + 1))
    with pytest.raises(ArtifactError, match="larger than"):
        reader(path)


def test_a_bounded_read_reads_no_more_than_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_artifact_bytes(path, 100, "file") == b"x" * 100
    with pytest.raises(ArtifactError, match="larger than 99 bytes"):
        read_artifact_bytes(path, 99, "file")


@pytest.mark.parametrize("reader", [read_yaml, read_json])
def test_non_utf8_a_directory_and_a_missing_file_are_named(tmp_path: Path, reader: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ArtifactError, match="not UTF-8 text"):
        reader(path)
    folder = tmp_path / "d.yaml"
    folder.mkdir()
    with pytest.raises(ArtifactError, match="is a directory"):
        reader(folder)
    with pytest.raises(ArtifactError, match="file not found"):
        reader(tmp_path / "absent")


def test_a_permission_error_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.json"
    path.write_text("{}")
    real = os.open

    def open_(file: Any, *args: Any, **kwargs: Any) -> int:
        if Path(file) == path:  # root opens any file whatever its mode: refuse as the kernel would for a user
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(ArtifactError, match="permission denied") as caught:
        read_json(path)
    assert str(path) in caught.value.message


def test_pointer_files_are_bounded_too(tmp_path: Path) -> None:
    (tmp_path / "active").write_text("1" * 10_000)
    with pytest.raises(ArtifactError, match="larger than"):
        read_pointer(tmp_path, "active")
    (tmp_path / "bundle").write_text("[" * DEEP + "]" * DEEP)
    with pytest.raises(ArtifactError, match=r"not a bundle pin \(nests deeper"):
        read_pin(tmp_path)
    (tmp_path / "shadow").mkdir()
    with pytest.raises(ArtifactError, match="is a directory"):
        read_pointer(tmp_path, "shadow")


def test_a_fifo_or_a_device_named_like_an_artifact_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "9.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactError, match="is not a regular file"):
        read_yaml(fifo)
    device = tmp_path / "1.json"
    device.symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match="is not a regular file"):
        read_json(device)
