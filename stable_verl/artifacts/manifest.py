"""``_MANIFEST.json``: the completeness marker and integrity record of an uploaded directory.

A manifest lists every file of a directory (relative POSIX path, size in bytes, sha256) plus ``created_at``
and free-form ``metadata``. It is written *last*, after every listed file has been uploaded, so readers
treat a directory without a valid manifest as incomplete (an interrupted upload) and ignore it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from stable_verl.artifacts.errors import ManifestError

MANIFEST_NAME = "_MANIFEST.json"
MANIFEST_VERSION = 1
_CHUNK = 8 * 2**20


def utc_now() -> str:
    """Current UTC time as an ISO-8601 string with a ``Z`` suffix (second precision)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a local file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_relative_path(path: str) -> str:
    """Validate a manifest path: relative, POSIX, no ``.``/``..``/empty components. Returns it unchanged."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ManifestError(f"unsafe path in manifest: {path!r}")
    return path


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a manifested directory."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass
class Manifest:
    """Files (sorted by path), creation time and metadata of one uploaded directory."""

    files: list[ManifestEntry]
    created_at: str = field(default_factory=utc_now)
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def entry(self, path: str) -> ManifestEntry | None:
        """The entry for ``path``, or ``None``."""
        return next((f for f in self.files if f.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "total_size": self.total_size,
            "files": [f.to_dict() for f in self.files],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse and validate; raises :class:`ManifestError` on anything malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise ManifestError("manifest must be an object with a 'files' list")
        entries: list[ManifestEntry] = []
        for raw in data["files"]:
            try:
                entry = ManifestEntry(path=str(raw["path"]), size=int(raw["size"]), sha256=str(raw["sha256"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ManifestError(f"bad manifest entry {raw!r}: {exc}") from None
            check_relative_path(entry.path)
            if entry.size < 0 or len(entry.sha256) != 64:
                raise ManifestError(f"bad size or sha256 for {entry.path!r}")
            entries.append(entry)
        if len({e.path for e in entries}) != len(entries):
            raise ManifestError("duplicate paths in manifest")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ManifestError("manifest 'metadata' must be an object")
        return cls(
            files=entries,
            created_at=str(data.get("created_at", "")),
            metadata=metadata,
            version=int(data.get("version", MANIFEST_VERSION)),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def list_files(local_dir: str | os.PathLike[str]) -> list[str]:
    """Relative POSIX paths of every regular file below ``local_dir`` (recursively, without ``_MANIFEST.json``)."""
    root = Path(local_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = PurePosixPath(full.relative_to(root).as_posix()).as_posix()
            if rel != MANIFEST_NAME and full.is_file():
                rels.append(rel)
    return sorted(rels)


def build_manifest(local_dir: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Manifest:
    """Hash every regular file below ``local_dir`` (recursively, skipping any existing ``_MANIFEST.json``)."""
    root = Path(local_dir)
    entries = [
        ManifestEntry(path=rel, size=(root / rel).stat().st_size, sha256=sha256_file(root / rel))
        for rel in list_files(root)
    ]
    return Manifest(files=entries, metadata=dict(metadata or {}))
