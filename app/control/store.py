"""The registry view of a model store: every model version, its checks, calibrations and who serves it.

Read from files only (no onnxruntime session is opened), so `fusionrank models list` runs anywhere;
`GET /admin/models` adds what the running process serves. `served_from_files` reads the triple each
surface serves after a restart: `active` policy, its model/calibration, or the `bundle` pin's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.artifacts.common import sha256_file
from app.artifacts.loading import check_calibration_for, load_calibration, load_manifest, load_policy
from app.control.declared import read_declared
from app.control.loader import read_active_version, surface_dirs
from app.control.pins import read_pin
from app.errors import ArtifactError
from app.serving.golden import GOLDEN_FILE

__all__ = ["describe_store", "served_from_files"]


def describe_store(model_store: Path) -> list[dict[str, Any]]:
    """One entry per `<model>/<version>` folder: manifest summary, sha256 check, golden batch, calibrations."""
    out: list[dict[str, Any]] = []
    if not model_store.is_dir():
        return out
    for model_dir in sorted(p for p in model_store.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            bundles = sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:  # an unreadable model folder is listed as a problem, not an error of the listing
            out.append({"model": model_dir.name, "version": "", "path": str(model_dir), "sha256": None,
                        "valid": False, "problem": f"{model_dir}: cannot list: {exc}", "calibrations": []})
            continue
        out.extend(_describe_bundle(bundle_dir) for bundle_dir in bundles)
    return out


def _describe_bundle(bundle_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": bundle_dir.parent.name, "version": bundle_dir.name, "path": str(bundle_dir)}
    model_path = bundle_dir / "model.onnx"
    try:
        entry["sha256"] = sha256_file(model_path) if model_path.is_file() else None
    except OSError as exc:  # unreadable: the manifest check below names it too
        entry.update(sha256=None, valid=False, problem=f"{model_path}: cannot read: {exc}", calibrations=[])
        return entry
    try:
        manifest = load_manifest(bundle_dir)
    except ArtifactError as exc:
        entry.update(valid=False, problem=str(exc), calibrations=[])
        return entry
    entry.update(
        valid=True, problem=None,
        tasks=manifest.task_names(),
        features={"numeric": len(manifest.features.numeric), "categorical": len(manifest.features.categorical)},
        training_window={"start": manifest.training_window.start.isoformat(),
                         "end": manifest.training_window.end.isoformat()},
        created_at=manifest.created_at.isoformat(), code_version=manifest.code_version,
        parity_max_abs_diff=None if manifest.parity is None else manifest.parity.max_abs_diff,
        golden_batch=(bundle_dir / GOLDEN_FILE).is_file(),
    )
    calibrations = []
    for path in sorted((bundle_dir / "calibration").glob("*.json")):
        item: dict[str, Any] = {"version": path.stem}
        try:
            calibration = load_calibration(path)
            check_calibration_for(calibration, manifest, path)
            item.update(valid=True, created_at=calibration.created_at.isoformat(), problem=None)
        except ArtifactError as exc:
            item.update(valid=False, problem=str(exc))
        calibrations.append(item)
    entry["calibrations"] = calibrations
    return entry


def served_from_files(policies: Path) -> dict[str, dict[str, str | None]]:
    """surface -> the triple its files say it serves (what a restarted replica would load)."""
    out: dict[str, dict[str, str | None]] = {}
    if not policies.is_dir():
        return out
    for surface_dir in surface_dirs(policies):
        try:
            declared = read_declared(surface_dir)
        except ArtifactError as exc:
            out[surface_dir.name] = {"problem": str(exc)}
            continue
        if declared is not None:  # the declared rollout file wins over the pointer files
            out[surface_dir.name] = {**declared.active.model_dump(), "generation": str(declared.generation)}
            continue
        try:
            active = read_active_version(surface_dir)
            policy = load_policy(surface_dir / f"{active}.yaml")
            pin = read_pin(surface_dir)
        except ArtifactError as exc:
            out[surface_dir.name] = {"problem": str(exc)}
            continue
        out[surface_dir.name] = {
            "model": policy.model.name,
            "model_version": pin.model_version if pin else policy.model.version,
            "calibration_version": pin.calibration_version if pin else policy.calibration_version,
            "policy_version": active,
            "pinned": "yes" if pin else "no",
        }
    return out
