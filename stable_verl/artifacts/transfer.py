"""Manifested directories: upload with ``_MANIFEST.json`` written last, verified download, completeness.

Mixed into :class:`~stable_verl.artifacts.store.ArtifactStore`; relies on its path helpers (``_full``,
``_op``, ``_call``, ``uri``, ``secrets``), small-object I/O (``read_bytes``, ``write_bytes``, ``delete``, ``glob``)
and ``fs``.
On object stores the upload of a directory's files and its whole verified download are each one retried
operation: a transfer cut short, or a download whose sha256 does not match, is done again before anything is
trusted.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stable_verl.artifacts.errors import ArtifactIntegrityError, ArtifactStoreError, IncompleteArtifactError
from stable_verl.artifacts.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestEntry,
    ManifestError,
    check_relative_path,
    list_files,
    sha256_file,
)
from stable_verl.artifacts.redact import redact

log = logging.getLogger(__name__)


class ManifestedDirsMixin:
    """``put_dir`` / ``get_dir`` / ``is_complete`` / ``list_complete`` / ``sizes`` for :class:`ArtifactStore`."""

    fs: Any
    is_local: bool

    def sizes(self, prefix: str) -> dict[str, int]:
        """``{path relative to prefix: size}`` for every object below ``prefix`` (one listing; empty when there is
        none): what a reader needs to tell complete manifested folders from incomplete ones without a listing each."""
        full = self._full(prefix)

        def find() -> dict[str, Any]:
            self.fs.invalidate_cache()
            try:
                return self.fs.find(full, detail=True)
            except FileNotFoundError:
                return {}

        found = self._call("list", prefix, find)
        return {p[len(full) + 1 :]: int(i.get("size") or 0) for p, i in found.items() if p.startswith(full + "/")}

    # -------------------------------------------------------------------------------------- directories
    def read_manifest(self, prefix: str) -> Manifest | None:
        """The directory's manifest, or ``None`` when it is missing or invalid (= incomplete)."""
        try:
            return Manifest.from_json(self.read_bytes(f"{prefix}/{MANIFEST_NAME}"))
        except FileNotFoundError:
            return None
        except ManifestError as exc:
            log.warning("ignoring invalid manifest under %s: %s", self.uri(prefix), exc)
            return None

    def is_complete(self, prefix: str, *, check_sizes: bool = True) -> bool:
        """A valid manifest exists and (by default) every listed file is present with the recorded size."""
        manifest = self.read_manifest(prefix)
        if manifest is None:
            return False
        sizes = self.sizes(prefix) if check_sizes else {}
        return not check_sizes or all(sizes.get(f.path) == f.size for f in manifest.files)

    def list_complete(self, prefix_glob: str) -> list[str]:
        """Relative prefixes matching ``prefix_glob`` (e.g. ``runs/*/checkpoints/global_step_*``) that are complete."""
        candidates = {p.rsplit("/", 1)[0] for p in self.glob(f"{prefix_glob.strip('/')}/{MANIFEST_NAME}")}
        return [c for c in sorted(candidates) if self.is_complete(c)]

    def _put_files(self, lpaths: list[str], rpaths: list[str]) -> None:
        if self.is_local:
            for lpath, rpath in zip(lpaths, rpaths, strict=True):
                os.makedirs(os.path.dirname(rpath), exist_ok=True)
                shutil.copyfile(lpath, rpath)
        elif lpaths:
            self.fs.put(lpaths, rpaths)

    def _write_manifest(self, prefix: str, manifest: Manifest) -> None:
        self.write_bytes(f"{prefix}/{MANIFEST_NAME}", manifest.to_json().encode())

    def put_files(
        self, local_dir: str | os.PathLike[str], remote_prefix: str, rels: Sequence[str]
    ) -> list[ManifestEntry]:
        """Upload the files ``rels`` (relative POSIX paths) of ``local_dir`` below ``remote_prefix``; no manifest.

        The files are hashed while they upload (both read them; hashing releases the GIL). Returns their manifest
        entries, for whoever writes the directory's manifest last: several processes may each upload their own
        part of one directory; the writer checks the uploaded sizes of them all first (:meth:`check_uploaded`).
        """
        rels = [check_relative_path(r) for r in rels]
        lpaths = [str(Path(local_dir) / r) for r in rels]
        with ThreadPoolExecutor(max_workers=1) as pool:
            digests = pool.map(sha256_file, lpaths)
            self._call(
                "upload", remote_prefix, self._put_files, lpaths, [self._full(f"{remote_prefix}/{r}") for r in rels]
            )
            entries = [
                ManifestEntry(path=r, size=os.path.getsize(lp), sha256=d)
                for r, lp, d in zip(rels, lpaths, digests, strict=True)
            ]
        return entries

    def check_uploaded(self, remote_prefix: str, entries: Sequence[ManifestEntry]) -> None:
        """Raise unless every entry is below ``remote_prefix`` with its size (one listing)."""
        sizes = self.sizes(remote_prefix) if entries else {}
        bad = [e.path for e in entries if sizes.get(e.path) != e.size]
        if bad:
            raise ArtifactStoreError(f"upload to {self.uri(remote_prefix)} incomplete: size mismatch for {bad}")

    def write_manifest(self, prefix: str, manifest: Manifest) -> None:
        """Write ``prefix``'s ``_MANIFEST.json`` once every file it lists is uploaded (:meth:`check_uploaded`)."""
        self._write_manifest(prefix, manifest)

    def put_dir(
        self, local_dir: str | os.PathLike[str], remote_prefix: str, metadata: Mapping[str, Any] | None = None
    ) -> Manifest:
        """Upload every file of ``local_dir`` to ``remote_prefix``, then write ``_MANIFEST.json`` last.

        An existing manifest is deleted first, so a re-upload into the same prefix is incomplete until it
        finishes. Uploaded sizes are checked before the manifest is written.
        """
        rels = list_files(local_dir)
        self.delete(f"{remote_prefix}/{MANIFEST_NAME}")
        entries = self.put_files(local_dir, remote_prefix, rels)
        self.check_uploaded(remote_prefix, entries)
        manifest = Manifest(files=entries, metadata=redact(dict(metadata or {}), secrets=self.secrets()))
        self._write_manifest(remote_prefix, manifest)
        log.info(
            "uploaded %d files (%d bytes) to %s", len(manifest.files), manifest.total_size, self.uri(remote_prefix)
        )
        return manifest

    def get_dir(
        self,
        remote_prefix: str,
        local_dir: str | os.PathLike[str],
        only: Callable[[str], bool] | None = None,
    ) -> Manifest:
        """Download a complete directory and verify size + sha256 of every file against its manifest.

        ``only``: download just the files whose manifest path it accepts (one node's part of a checkpoint);
        the local ``_MANIFEST.json`` is then not written, as the local copy is not the whole directory.
        Raises :class:`IncompleteArtifactError` without a valid manifest or when a listed file is missing,
        and :class:`ArtifactIntegrityError` on a mismatch that repeats on every retry (the bad file is not left
        in ``local_dir``).
        """
        manifest = self.read_manifest(remote_prefix)
        if manifest is None:
            raise IncompleteArtifactError(f"{self.uri(remote_prefix)} has no valid {MANIFEST_NAME} (incomplete)")
        files = [f for f in manifest.files if only is None or only(f.path)]
        dest = Path(local_dir)
        tmps = [dest / f"{f.path}.part-{uuid.uuid4().hex[:8]}" for f in files]
        for tmp in tmps:
            tmp.parent.mkdir(parents=True, exist_ok=True)
        rpaths = [self._full(f"{remote_prefix}/{f.path}") for f in files]

        def download() -> None:
            """Fetch every file into its temporary name and verify it; on any error remove them all."""
            try:
                if self.is_local:
                    for rpath, tmp in zip(rpaths, tmps, strict=True):
                        shutil.copyfile(rpath, tmp)
                elif rpaths:
                    self.fs.get(rpaths, [str(t) for t in tmps])
                for entry, tmp in zip(files, tmps, strict=True):
                    size, digest = tmp.stat().st_size, sha256_file(tmp)
                    if size != entry.size or digest != entry.sha256:
                        raise ArtifactIntegrityError(
                            f"{self.uri(remote_prefix, entry.path)}: expected {entry.size} bytes sha256 "
                            f"{entry.sha256[:12]}..., got {size} bytes sha256 {digest[:12]}..."
                        )
            except BaseException as exc:
                for tmp in tmps:
                    tmp.unlink(missing_ok=True)
                if isinstance(exc, FileNotFoundError):
                    msg = f"{self.uri(remote_prefix)}: a manifested file is missing: {exc}"
                    raise IncompleteArtifactError(msg) from None
                raise

        self._call("download", remote_prefix, download)  # a corrupted or cut download is fetched again
        for entry, tmp in zip(files, tmps, strict=True):
            os.replace(tmp, dest / entry.path)
        if only is None:
            (dest / MANIFEST_NAME).write_text(manifest.to_json())
        log.info("downloaded %d verified files from %s to %s", len(files), self.uri(remote_prefix), dest)
        return manifest
