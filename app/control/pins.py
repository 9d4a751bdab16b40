"""The `bundle` pointer of a surface folder: the model and calibration version the active policy runs on.

A policy file names a model version and a calibration version. Rolling out a new calibration (daily)
or model (weekly) should not need a new policy file, so a surface may carry a *pin*: the file
`policies/<surface>/bundle`, one JSON object `{"model_version": "2", "calibration_version": "3"}`.
When present it overrides the references of the surface's **active** policy only (requests pinned to
another policy version get that file's own triple); the model *name* always comes from the policy, and
the policy must validate against the pinned model and calibration exactly as against its own
(tasks, attributes, polarities). Written atomically like the other pointers; absent: no pin.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.artifacts.loading import parse_json_text, read_artifact_text
from app.control.pointers import MAX_POINTER_BYTES, VERSION_PATTERN, write_atomically
from app.errors import ArtifactError
from app.serving.bundle import BundlePin

__all__ = ["PIN_FILE", "BundlePin", "read_pin", "remove_pin", "write_pin"]

PIN_FILE = "bundle"


def read_pin(surface_dir: Path) -> BundlePin | None:
    path = surface_dir / PIN_FILE
    if not path.exists():  # absent (or a dangling symlink): no pointer
        return None
    text = read_artifact_text(path, MAX_POINTER_BYTES, "bundle pin").strip()
    if not text:
        return None
    try:
        data = parse_json_text(text, path)  # bounded in depth like every JSON artifact
        pin = BundlePin(str(data["model_version"]), str(data["calibration_version"]))
    except (ArtifactError, KeyError, TypeError) as exc:
        why = exc.details[0].message if isinstance(exc, ArtifactError) else str(exc)
        raise ArtifactError(path, "", f"not a bundle pin ({why})",
                            'write {"model_version": "2", "calibration_version": "1"}') from None
    for field, value in pin.to_dict().items():
        if not VERSION_PATTERN.match(value):
            raise ArtifactError(path, field, f"{value!r} is not a version name", "write a version, e.g. `2`")
    return pin


def write_pin(surface_dir: Path, pin: BundlePin) -> None:
    """Replace the pin atomically; raises OSError when the folder is read-only."""
    write_atomically(surface_dir / PIN_FILE, json.dumps(pin.to_dict()) + "\n")


def remove_pin(surface_dir: Path) -> None:
    (surface_dir / PIN_FILE).unlink(missing_ok=True)
