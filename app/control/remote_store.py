"""Object-storage backends: a model store and policies folder in `s3://` / `gs://`, mirrored into a local cache.

The rest of app/control reads local folders only. When FUSIONRANK_MODEL_STORE or FUSIONRANK_POLICIES is a
URI, the settings point the service at `<FUSIONRANK_STORE_CACHE>/model_store` and `.../policies`
instead, and a `RemoteStore` keeps those two folders a copy of the remote ones: once before the first
load, then before every watcher pass. Through fsspec (the `store` extra: fsspec + s3fs; gcsfs for gs://),
credentials and endpoints come from the provider's usual environment (AWS_* variables, AWS_ENDPOINT_URL
for an S3-compatible server).

- Change detection: each object's ETag (S3, GCS md5), else its modification time and size, compared with
  what the last pass copied; only changed objects are downloaded.
- Atomic: every object goes to a staging folder inside the cache first, then `os.replace` puts it in place.
- Verified: a bundle's files (`<model>/<version>/...`) are staged together; when model.onnx or manifest.json
  changed, the staged model.onnx must match the manifest's `model_sha256` or the whole bundle change is
  refused (logged, counted in `refused`), the cache keeps the last good files and the replica keeps serving
  them. A refused object is not downloaded again until it changes.
- An object deleted remotely is deleted from the cache (only files this mirror put there).

`write_text_atomic` writes a local file (temp + rename) or an object (one PUT). A rollout file is the one
object two replicas may write at once: `read_versioned` reads it with its version token (the S3 ETag) and
`write_if_unchanged` writes it only if the object is still at that version (S3 conditional writes, `If-Match`
/ `If-None-Match: *`, passed by s3fs to PutObject), so of two admins that read the same generation exactly one
wins. Other stores are refused for admin writes (gcsfs offers no write conditional on an object's generation
but "create if absent"; docs/scaling.md, "Store backends").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from app.artifacts.common import sha256_file
from app.errors import ArtifactError, Conflict
from app.settings import is_uri

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from app.settings import Settings

__all__ = ["RemoteStore", "StoreMirror", "read_versioned", "write_if_unchanged", "write_text_atomic"]

log = logging.getLogger("fusionrank.remote_store")

_STATE_FILE = ".fusionrank-mirror.json"
_STAGING_PREFIX = ".staging-"
_MODEL_FILE = "model.onnx"
_MANIFEST_FILE = "manifest.json"


def _filesystem(uri: str) -> tuple[AbstractFileSystem, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - the extra is installed in dev
        raise ArtifactError(
            uri, "", "object storage needs fsspec", "install the `store` extra (pip install -e '.[store]')"
        ) from exc
    try:
        fs, root = url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise ArtifactError(
            uri, "", f"no filesystem for this URI ({exc})", "install the `store` extra (s3://) or gcsfs (gs://)"
        ) from exc
    return fs, str(root).rstrip("/")


def write_text_atomic(uri_or_path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to a local file (temp file in the same folder + rename) or to an object (one PUT, which
    object stores apply atomically). A mirrored cache sees the new object at its next pass."""
    if is_uri(os.fspath(uri_or_path)):
        fs, path = _filesystem(str(uri_or_path))
        fs.pipe_file(path, text.encode())
        return
    target = Path(uri_or_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _conditional_fs(uri: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem of `uri` when it can write conditionally (S3), else a 409 naming the fix."""
    fs, path = _filesystem(uri)
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if not protocols & {"s3", "s3a"}:
        raise Conflict(f"{uri}: admin writes of the rollout file need a conditional write, which this store"
                       f" ({'/'.join(sorted(protocols))}) does not offer through fusionrank; nothing changed: keep"
                       " FUSIONRANK_POLICIES on a shared folder or on s3://, or replace the object with a"
                       " generation-conditional upload (docs/scaling.md, Store backends)")
    return fs, path


def read_versioned(uri: str) -> tuple[bytes | None, str | None]:
    """An object's bytes and its version token (the ETag a conditional write names); (None, None) when it does
    not exist. The token is read before the bytes: an object replaced in between makes the conditional write
    fail (a spurious conflict), never succeed on bytes it did not read."""
    fs, path = _conditional_fs(uri)
    fs.invalidate_cache(path)
    try:
        etag = str(fs.info(path)["ETag"])
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None, None
    return bytes(data), etag


def write_if_unchanged(uri: str, data: bytes, version: str | None) -> bool:
    """Write `data` only if the object is still at `version` (None: only if it does not exist yet): one
    conditional PUT, checked and applied by the store. False when the precondition failed (someone else wrote
    first, or removed the object); other failures raise."""
    fs, path = _conditional_fs(uri)
    try:
        if version is None:
            fs.pipe_file(path, data, mode="create")  # If-None-Match: *
        else:
            fs.pipe_file(path, data, IfMatch=version)
    except (FileExistsError, FileNotFoundError):  # created meanwhile / removed meanwhile
        return False
    except OSError as exc:
        if _precondition_failed(exc):
            return False
        raise
    finally:
        fs.invalidate_cache(path)
    return True


def _precondition_failed(exc: BaseException) -> bool:
    """Whether a filesystem error is the store's 412 Precondition Failed (s3fs keeps botocore's error as cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            return True
        seen = seen.__cause__
    return False


def _object_version(info: dict[str, Any]) -> str:
    """What identifies one object's contents: its ETag (or md5), else modification time and size."""
    for key in ("ETag", "etag", "md5Hash"):
        if info.get(key):
            return f"{key}:{info[key]}"
    stamp = info.get("LastModified") or info.get("updated") or info.get("mtime") or info.get("created")
    return f"mtime:{stamp}:size:{info.get('size')}"


@dataclass
class StoreMirror:
    """One remote folder (`uri`) copied into one local folder; `bundles`: the remote is a model store."""

    uri: str
    local: Path
    bundles: bool = False
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)  # relative path -> (object version, why)
    _copied: dict[str, str] | None = None  # relative path -> object version in the cache

    def sync(self) -> list[str]:
        """Copy what changed remotely; returns the relative paths now updated or deleted in the cache."""
        fs, root = _filesystem(self.uri)
        fs.invalidate_cache()
        listing = {
            str(PurePosixPath(path).relative_to(root)): _object_version(info)
            for path, info in fs.find(root, detail=True).items()
            if info.get("type", "file") == "file" and not PurePosixPath(path).name.startswith(".")
        }
        self.local.mkdir(parents=True, exist_ok=True)
        copied = self._state()
        if not listing and copied:  # a wrong prefix or a store emptied by mistake must not empty the cache
            raise ArtifactError(self.uri, "", "lists no object while the cache holds a mirror of it",
                                "check the URI and the bucket; the cache keeps serving the last mirrored files")
        for rel in [r for r, (version, _) in self.refused.items() if listing.get(r) != version]:
            del self.refused[rel]  # replaced or deleted remotely since: judged afresh below
        changed = [rel for rel, version in sorted(listing.items())
                   if copied.get(rel) != version and self.refused.get(rel, ("", ""))[0] != version]
        updated: list[str] = []
        for group in self._groups(changed):
            updated += self._apply(fs, root, group, listing, copied)
        for rel in sorted(set(copied) - set(listing)):
            with contextlib.suppress(FileNotFoundError):
                (self.local / rel).unlink()
            del copied[rel]
            updated.append(rel)
        if updated:
            self._save(copied)
            log.info("remote store %s: updated %s", self.uri, updated)
        return updated

    def _groups(self, changed: list[str]) -> list[list[str]]:
        """Changed paths applied together: a bundle's files (model store), else one path at a time."""
        if not self.bundles:
            return [[rel] for rel in changed]
        groups: dict[str, list[str]] = {}
        for rel in changed:
            parts = PurePosixPath(rel).parts
            groups.setdefault("/".join(parts[:2]) if len(parts) > 2 else rel, []).append(rel)
        return list(groups.values())

    def _apply(
        self, fs: AbstractFileSystem, root: str, group: list[str], listing: dict[str, str], copied: dict[str, str]
    ) -> list[str]:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.local))
        try:
            for rel in group:
                staged = staging / rel
                staged.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{root}/{rel}", str(staged))
            problem = self._bundle_problem(staging, group) if self.bundles else None
            if problem is not None:
                for rel in group:
                    self.refused[rel] = (listing[rel], problem)
                log.error("remote store %s: refused %s: %s; the cache keeps the last good files", self.uri, group,
                          problem)
                return []
            # model.onnx before manifest.json: a new bundle folder only looks complete once its manifest lands.
            for rel in sorted(group, key=lambda r: PurePosixPath(r).name == _MANIFEST_FILE):
                target = self.local / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target)
                copied[rel] = listing[rel]
                self.refused.pop(rel, None)
            return group
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _bundle_problem(self, staging: Path, group: list[str]) -> str | None:
        """Why a bundle change must not reach the cache (model.onnx vs the manifest's sha256), or None."""
        names = {PurePosixPath(rel).name for rel in group}
        if not names & {_MODEL_FILE, _MANIFEST_FILE}:
            return None
        bundle = PurePosixPath(*PurePosixPath(group[0]).parts[:2])  # <model>/<version>

        def newest(name: str) -> Path:
            staged = staging / bundle / name
            return staged if staged.exists() else self.local / bundle / name

        manifest, model = newest(_MANIFEST_FILE), newest(_MODEL_FILE)
        if not manifest.is_file() or not model.is_file():
            return f"{bundle}: needs both {_MANIFEST_FILE} and {_MODEL_FILE} (fix: upload the whole bundle)"
        try:
            expected = json.loads(manifest.read_text())["model_sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            return f"{bundle}/{_MANIFEST_FILE}: unreadable model_sha256 ({exc!r}); fix: upload a valid manifest"
        actual = sha256_file(model)
        if actual != expected:
            return (f"{bundle}/{_MODEL_FILE}: sha256 {actual} does not match the manifest's model_sha256 {expected}"
                    " (fix: upload the model.onnx the manifest was written for)")
        return None

    def _state(self) -> dict[str, str]:
        if self._copied is None:
            try:
                loaded = json.loads((self.local / _STATE_FILE).read_text())
                self._copied = {str(k): str(v) for k, v in loaded.items()}
            except (OSError, ValueError, AttributeError):  # no cache yet, or a damaged state file: copy all
                self._copied = {}
        return self._copied

    def _save(self, copied: dict[str, str]) -> None:
        write_text_atomic(self.local / _STATE_FILE, json.dumps(copied, sort_keys=True))


class RemoteStore:
    """The mirrors of a service whose model store or policies are URIs; `sync` runs before loads and polls."""

    def __init__(self, mirrors: list[StoreMirror]) -> None:
        self.mirrors = mirrors

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteStore | None:
        """The mirrors the settings ask for, or None when both folders are local."""
        mirrors = []
        if settings.model_store_uri is not None:
            mirrors.append(StoreMirror(settings.model_store_uri, settings.model_store, bundles=True))
        if settings.policies_uri is not None:
            mirrors.append(StoreMirror(settings.policies_uri, settings.policies))
        return cls(mirrors) if mirrors else None

    def sync(self) -> list[str]:
        """One pass over every mirror. A store that cannot be read is logged and skipped: the cache keeps the
        last mirrored files, so the replica keeps serving them and catches up at a later pass."""
        updated: list[str] = []
        for mirror in self.mirrors:
            try:
                updated += mirror.sync()
            except (OSError, ArtifactError) as exc:
                log.error("remote store %s: cannot mirror into %s: %s", mirror.uri, mirror.local, exc)
        return updated
