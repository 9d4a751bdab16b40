"""Pieces every artifact schema shares: strict models, safe identifiers, file hashing."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

__all__ = ["FiniteFloat", "Identifier", "StrictModel", "sha256_file"]

# Names and versions become path components in model_store/ and policies/: keep them to a safe
# alphabet so that no file can point outside the store (no "/", no "..", no leading dot).
Identifier = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", strip_whitespace=False)
]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]


class StrictModel(BaseModel):
    """Immutable schema that rejects unknown keys, so a typo in a file is an error, not a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
