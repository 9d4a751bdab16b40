"""Read artifact files and check their cross-references; every failure is an `ArtifactError`.

Checks: a manifest's sha256 matches its model.onnx; a calibration names the same model name,
version and sha, covers every task, and corrects only segment values in the model's vocabulary;
a policy's tasks, attributes, guardrails and overrides exist
in its model, calibration and attribute declarations.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from app.artifacts.calibration import CalibrationFile
from app.artifacts.common import sha256_file
from app.artifacts.manifest import ModelManifest
from app.artifacts.policy import PolicyFile
from app.artifacts.safe_yaml import MAX_DEPTH, MAX_YAML_BYTES, YamlTooDeep, YamlTooLarge, load_bounded_yaml
from app.errors import ArtifactError, ErrorDetail, PolicyError

__all__ = [
    "MAX_JSON_BYTES",
    "check_calibration_for",
    "check_policy_against",
    "json_depth",
    "load_calibration",
    "load_manifest",
    "load_policy",
    "parse_artifact",
    "parse_json_text",
    "read_artifact_bytes",
    "read_artifact_text",
    "read_json",
    "read_yaml",
]

M = TypeVar("M", bound=BaseModel)

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
# manifest.json, calibration/*.json, golden.json, sample_request.json: vocabularies make a manifest
# the largest (a 100k-value vocabulary is ~2 MB); anything far beyond is not an artifact of ours.
MAX_JSON_BYTES = 64 * 1024 * 1024


def read_artifact_bytes(path: Path, limit: int, what: str) -> bytes:
    """The bytes of one artifact file, at most `limit` of them (read no further: a huge or endless file
    costs `limit` bytes, not all of memory). Every failure is an `ArtifactError` naming the file."""
    try:
        # Non-blocking open, then a regular-file check: a FIFO or a device (`/dev/zero` behind a
        # symlink) named like an artifact would block or never end.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ArtifactError(path, "", f"is not a regular file, not a {what}",
                                    f"replace it with the {what} itself (a file or a symlink to one)")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise ArtifactError(path, "", "file not found", "check the path and that the file was written") from None
    except IsADirectoryError:
        raise ArtifactError(path, "", f"is a directory, not a {what}",
                            f"remove the directory or put the {what} in its place") from None
    except PermissionError as exc:
        raise ArtifactError(path, "", f"permission denied ({exc.strerror})",
                            "make the file readable by the service's user") from None
    except OSError as exc:
        raise ArtifactError(path, "", f"cannot read file: {exc}", "check the file and its file system") from None
    if len(data) > limit:
        raise ArtifactError(path, "", f"larger than {limit} bytes, the bound for a {what}",
                            f"write a {what} of normal size (a truncated or foreign file?)")
    return data


def read_artifact_text(path: Path, limit: int, what: str) -> str:
    """`read_artifact_bytes` decoded as UTF-8 (an `ArtifactError` naming the first bad byte otherwise)."""
    data = read_artifact_bytes(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(path, "", f"not UTF-8 text (byte {exc.start}: {exc.reason})",
                            "save the file as UTF-8") from None


def json_depth(text: str, stop_above: int | None = None) -> int:
    """How deep `text` nests arrays and objects, found by one scan without recursion (strings skipped):
    checked before `json.loads`, which recurses per level and raises `RecursionError` ~1000 deep."""
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(text):
        char = match.group()
        if char in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
            if stop_above is not None and deepest > stop_above:
                break  # deep enough to refuse: the rest of a hostile file is not scanned
        elif char in ("]", "}"):
            depth = max(0, depth - 1)
    return deepest


_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def parse_json_text(text: str, path: Path) -> Any:
    """`json.loads` of an artifact's text, refused past `MAX_DEPTH` levels before parsing."""
    if json_depth(text, stop_above=MAX_DEPTH) > MAX_DEPTH:
        raise ArtifactError(path, "", f"nests deeper than {MAX_DEPTH} levels",
                            "an artifact file is a few levels deep: rewrite it (a corrupted or hostile file?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            path, f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}", "fix the JSON syntax"
        ) from None
    except RecursionError:  # not reached past the depth check; never let it out of a load
        raise ArtifactError(path, "", "nests too deep to parse", "rewrite the file flat") from None


def read_json(path: Path, *, limit: int = MAX_JSON_BYTES, what: str = "JSON artifact") -> Any:
    """A JSON artifact file, bounded in size (`limit`) and depth (`MAX_DEPTH`); failures are `ArtifactError`s."""
    return parse_json_text(read_artifact_text(path, limit, what), path)


def read_yaml(path: Path) -> Any:
    """A YAML artifact (a policy), bounded in size, depth and alias expansion; failures are `ArtifactError`s."""
    text = read_artifact_text(path, MAX_YAML_BYTES, "policy file")
    try:
        return load_bounded_yaml(text)
    except YamlTooDeep as exc:
        raise ArtifactError(path, "", str(exc), "write the policy with its documented shape") from None
    except YamlTooLarge as exc:
        raise ArtifactError(path, "", str(exc), "write a plain policy file without alias chains") from None
    except yaml.YAMLError as exc:
        raise ArtifactError(path, "", f"invalid YAML: {exc}", "fix the YAML syntax") from None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_artifact(model: type[M], data: Any, path: Path, *, error: type[ArtifactError] = ArtifactError) -> M:
    """Validate `data` against `model`; a failure names the file and every field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            ErrorDetail(message=e["msg"], field=_loc(e["loc"]) or None, fix="correct this field")
            for e in exc.errors(include_url=False)
        ]
        first = details[0]
        raise error(
            path,
            first.field or "",
            f"{first.message} ({len(details)} problem(s) in all)",
            f"correct the field(s) to match the {model.__name__} schema",
            details=details,
        ) from None


def load_manifest(bundle_dir: Path, *, verify_sha: bool = True) -> ModelManifest:
    """Load `<bundle_dir>/manifest.json` and check that model.onnx is the file it describes."""
    path = bundle_dir / MANIFEST
    manifest = parse_artifact(ModelManifest, read_json(path), path)
    model_path = bundle_dir / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(model_path, "", "model file is missing", "export the model into this bundle folder")
    if verify_sha:
        try:
            actual = sha256_file(model_path)
        except OSError as exc:  # vanished or unreadable between the check above and this read
            raise ArtifactError(
                model_path, "", f"cannot read the model file: {exc}", "check that it exists and is readable"
            ) from None
        if actual != manifest.model_sha256:
            raise ArtifactError(
                path,
                "model_sha256",
                f"{MODEL_FILE} has sha256 {actual}, the manifest says {manifest.model_sha256}",
                "re-export the bundle; a changed or corrupted model.onnx is never served",
            )
    if (bundle_dir.parent.name, bundle_dir.name) != (manifest.name, manifest.version):
        raise ArtifactError(
            path,
            "name/version",
            f"manifest says {manifest.name}/{manifest.version} but lives in"
            f" {bundle_dir.parent.name}/{bundle_dir.name}",
            "store the bundle as model_store/<name>/<version>/",
        )
    return manifest


def load_calibration(path: Path) -> CalibrationFile:
    return parse_artifact(CalibrationFile, read_json(path), path)


def check_calibration_for(calibration: CalibrationFile, manifest: ModelManifest, path: Path) -> None:
    """Refuse a calibration that was not fitted for this exact model, or misses a task."""
    fitted = calibration.model
    if fitted is None:
        raise ArtifactError(
            path, "model", "this calibration was fitted without a model bundle",
            "refit with `fusionrank calibrate fit --model <bundle dir>` so it names the model it belongs to",
        )
    if (fitted.name, fitted.version, fitted.sha256) != (manifest.name, manifest.version, manifest.model_sha256):
        raise ArtifactError(
            path, "model",
            f"fitted for {fitted.name}/{fitted.version} (sha {fitted.sha256[:12]}), not for"
            f" {manifest.name}/{manifest.version} (sha {manifest.model_sha256[:12]})",
            "refit the calibration for the loaded model version",
        )
    tasks = manifest.task_names()
    missing = [t for t in tasks if t not in calibration.tasks]
    unknown = [t for t in calibration.tasks if t not in tasks]
    if missing or unknown:
        raise ArtifactError(
            path, "tasks", f"tasks missing: {missing}, tasks unknown to the model: {unknown}",
            f"calibrate exactly the model's tasks {tasks}",
        )
    vocabularies = {f.name: f.vocabulary for f in manifest.features.categorical}
    for task, cal in calibration.tasks.items():
        for i, seg in enumerate(cal.segments):
            if seg.feature not in vocabularies:
                raise ArtifactError(
                    path, f"tasks.{task}.segments[{i}].feature",
                    f"segment feature {seg.feature!r} is not a categorical feature of the model",
                    f"use one of {sorted(vocabularies)}",
                )
            # A value outside the vocabulary is encoded as out-of-vocabulary: its correction would never apply.
            unknown_values = sorted(set(seg.values) - set(vocabularies[seg.feature]))
            if unknown_values:
                raise ArtifactError(
                    path, f"tasks.{task}.segments[{i}].values",
                    f"values {unknown_values[:5]} are not in the vocabulary of {seg.feature!r}",
                    "refit with `fusionrank calibrate fit --model <bundle dir>`, which keeps only the model's values",
                )


def load_policy(path: Path) -> PolicyFile:
    """Load a policy and check it is stored where its surface and version say."""
    policy = parse_artifact(PolicyFile, read_yaml(path), path, error=PolicyError)
    if (path.parent.name, path.stem) != (policy.surface, policy.version):
        raise PolicyError(
            path, "surface/version",
            f"file says surface {policy.surface!r} version {policy.version!r} but is stored as"
            f" {path.parent.name}/{path.name}",
            "store a policy as policies/<surface>/<version>.yaml",
        )
    return policy


def check_policy_against(
    policy: PolicyFile, manifest: ModelManifest, calibration_version: str, path: Path, *, serving: bool = True
) -> None:
    """Check every reference in `policy` against the model it runs on (raises `PolicyError`)."""

    def fail(field: str, message: str, fix: str) -> None:
        raise PolicyError(path, field, message, fix)

    if (policy.model.name, policy.model.version) != (manifest.name, manifest.version):
        fail("model", f"policy is for {policy.model.name}/{policy.model.version}, model is"
             f" {manifest.name}/{manifest.version}", "point `model` at the served model version")
    if policy.calibration_version != calibration_version:
        fail("calibration_version", f"{policy.calibration_version!r} is not the loaded calibration"
             f" {calibration_version!r}", "name a calibration version of this model")
    tasks = {t.name: t for t in manifest.tasks}
    declared = policy.attributes

    def check_attribute(field: str, name: str, want: str | None = None) -> None:
        if name not in declared:
            fail(field, f"attribute {name!r} is not declared in `attributes`",
                 f"declare it (e.g. `attributes: {{{name}: number}}`) or use one of {sorted(declared)}")
        if want is not None and declared[name] != want:
            fail(field, f"attribute {name!r} is declared {declared[name]}, this needs {want}",
                 f"declare it as {want}")

    def check_weight(field: str, task: str, weight: float) -> None:
        if tasks[task].polarity == "negative" and weight > 0:
            fail(field, f"task {task!r} is negative (manifest polarity) but has weight {weight}",
                 "give a negative task a weight <= 0, so that it can only lower the utility")

    for i, term in enumerate(policy.utility):
        if term.task not in tasks:
            fail(f"utility[{i}].task", f"unknown task {term.task!r}", f"use one of {list(tasks)}")
        check_weight(f"utility[{i}].weight", term.task, term.weight)
        if term.attribute is not None:
            check_attribute(f"utility[{i}].attribute", term.attribute, "number")
    for i, guard in enumerate(policy.guardrails):
        if guard.task is not None and guard.task not in tasks:
            fail(f"guardrails[{i}].task", f"unknown task {guard.task!r}", f"use one of {list(tasks)}")
        if guard.attribute is not None:
            check_attribute(f"guardrails[{i}].attribute", guard.attribute)
    for i, rule in enumerate(policy.slate.max_per_value):
        check_attribute(f"slate.max_per_value[{i}].attribute", rule.attribute)
    for i, cap in enumerate(policy.slate.max_matching):
        check_attribute(f"slate.max_matching[{i}].attribute", cap.attribute)
    terms = {t.name: t for t in policy.utility}
    prediction_guards = {g.name for g in policy.guardrails if g.task is not None}
    for i, override in enumerate(policy.overrides):
        for name, weight in override.weights.items():
            if name not in terms:
                fail(f"overrides[{i}].weights.{name}", f"no utility term named {name!r}",
                     f"use one of {list(terms)}")
            check_weight(f"overrides[{i}].weights.{name}", terms[name].task, weight)
        for name in override.thresholds:
            if name not in prediction_guards:
                fail(f"overrides[{i}].thresholds.{name}", f"no prediction guardrail named {name!r}",
                     f"use one of {sorted(prediction_guards)}")
    if serving and not policy.governance.approved_by:
        fail("governance.approved_by", "the policy has no approver (a draft)",
             "have a reviewer add their name to `approved_by` before it is activated")
