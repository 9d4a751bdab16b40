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
from dataclasses import dataclass
from pathlib import Path

from app.control.pointers import VERSION_PATTERN, write_atomically
from app.errors import ArtifactError

__all__ = ["PIN_FILE", "BundlePin", "read_pin", "remove_pin", "write_pin"]

PIN_FILE = "bundle"


@dataclass(frozen=True, slots=True)
class BundlePin:
    """The (model version, calibration version) a surface's active policy is bound to."""

    model_version: str
    calibration_version: str

    def to_dict(self) -> dict[str, str]:
        return {"model_version": self.model_version, "calibration_version": self.calibration_version}


def read_pin(surface_dir: Path) -> BundlePin | None:
    path = surface_dir / PIN_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, "", f"cannot read the bundle pin: {exc}", "check permissions and encoding") from None
    if not text:
        return None
    try:
        data = json.loads(text)
        pin = BundlePin(str(data["model_version"]), str(data["calibration_version"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(path, "", f"not a bundle pin ({exc})",
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
