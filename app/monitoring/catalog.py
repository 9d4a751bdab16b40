"""Drift schemes by version: the served ones from the snapshot, older ones loaded from the model store.

Feedback arrives hours after serving (a purchase label matures in 72 h), often after a newer model
or calibration has been activated, so a feedback event's scheme is looked up by the versions the
event names, not by what is active now. Schemes of versions no longer served are read from
`model_store/<model>/<version>/` on first use (manifest + calibration file, the same checks the
loader makes) and kept; misses are remembered for `miss_ttl` seconds so that a client sending an
unknown version does not cost a disk read per event.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.artifacts.calibration import CalibrationFile
from app.artifacts.loading import check_calibration_for, load_calibration, load_manifest
from app.artifacts.manifest import ModelManifest
from app.errors import ArtifactError
from app.monitoring.scheme import DriftScheme

__all__ = ["MAX_SEGMENT_VALUES", "SchemeCatalog", "SchemeKey", "SchemeMiss"]

log = logging.getLogger("fusionrank.feedback")

SchemeKey = tuple[str, str, str]  # (model, model_version, calibration_version)

# Cap on the allowed values of one segment field: bounds the cardinality of the segment series.
MAX_SEGMENT_VALUES = 64
_MAX_ENTRIES = 256


@dataclass(frozen=True, slots=True)
class SchemeMiss:
    """Why the versions a feedback event names cannot be used: the event field at fault and the reason."""

    field: str
    reason: str


class SchemeCatalog:
    """Cache of `DriftScheme`s keyed by (model, model_version, calibration_version)."""

    def __init__(self, *, miss_ttl: float = 30.0) -> None:
        self.miss_ttl = miss_ttl
        self._lock = threading.Lock()
        self._schemes: dict[SchemeKey, DriftScheme] = {}
        self._misses: dict[SchemeKey, tuple[float, SchemeMiss]] = {}  # key -> (monotonic time, miss)

    def of(self, manifest: ModelManifest, calibration: CalibrationFile) -> DriftScheme:
        """The scheme of a loaded (manifest, calibration) pair; built once."""
        key = (manifest.name, manifest.version, calibration.version)
        with self._lock:
            scheme = self._schemes.get(key)
            if scheme is None:
                scheme = DriftScheme.build(manifest, calibration, max_values=MAX_SEGMENT_VALUES)
                self._store(key, scheme)
                self._misses.pop(key, None)
            return scheme

    def cached(self, key: SchemeKey) -> DriftScheme | SchemeMiss | None:
        """The scheme, the reason of a recent miss, or None when it must be loaded (`load`)."""
        with self._lock:
            scheme = self._schemes.get(key)
            if scheme is not None:
                return scheme
            miss = self._misses.get(key)
            if miss is not None and time.monotonic() - miss[0] < self.miss_ttl:
                return miss[1]
            return None

    def load(self, model_store: Path, key: SchemeKey) -> DriftScheme | SchemeMiss:
        """Read a scheme from the model store (blocking file I/O), or say why it cannot be used."""
        model, version, calibration_version = key
        bundle_dir = model_store / model / version  # names are Identifiers: no "/" or ".." (FeedbackEvent)
        path = bundle_dir / "calibration" / f"{calibration_version}.json"
        if not (bundle_dir / "manifest.json").is_file():
            return self._miss(key, SchemeMiss("model_version", f"model {model}/{version} is not in the model store"
                                              " (fix: copy `versions` from the score response)"))
        if not path.is_file():
            return self._miss(key, SchemeMiss(
                "calibration_version", f"model {model}/{version} has no calibration {calibration_version!r}"
                " (fix: copy `versions.calibration_version` from the score response)"))
        try:
            manifest = load_manifest(bundle_dir, verify_sha=False)
            calibration = load_calibration(path)
            check_calibration_for(calibration, manifest, path)
            return self.of(manifest, calibration)
        # A broken file is the operator's problem (logged); the caller gets the gist, on the events that
        # name these versions only. RecursionError / ValueError: a parser refusing a hostile file (e.g. a
        # deeply nested JSON) before the loaders turn every such failure into an ArtifactError.
        except (ArtifactError, RecursionError, ValueError) as exc:
            reason = exc.message if isinstance(exc, ArtifactError) else f"cannot be parsed ({type(exc).__name__})"
            log.warning("feedback for %s refused, its files are unusable: %s (%s)", "/".join(key), reason, path)
            return self._miss(key, SchemeMiss(
                "calibration_version", f"the files of {'/'.join(key)} are unusable: {reason} (fix: the operator"
                " repairs the file; events naming other versions are counted)"))

    def _miss(self, key: SchemeKey, miss: SchemeMiss) -> SchemeMiss:
        with self._lock:
            if len(self._misses) >= _MAX_ENTRIES:
                self._misses.clear()
            self._misses[key] = (time.monotonic(), miss)
        return miss

    def _store(self, key: SchemeKey, scheme: DriftScheme) -> None:
        if len(self._schemes) >= _MAX_ENTRIES:  # only a store with hundreds of versions gets here
            self._schemes.clear()
        self._schemes[key] = scheme
