"""``ArtifactStore``: a root folder or S3 prefix reached through fsspec.

All paths passed to the store are *relative to its root* (``runs/<id>/run.json``); :meth:`ArtifactStore.uri`
turns them into user-facing locations. Credentials come from ``storage_options`` or the usual AWS
environment and never reach artifacts, logs, ``repr`` or error messages (see :mod:`.redact`).
Directories are uploaded with :meth:`put_dir`, which writes ``_MANIFEST.json`` last; readers only trust
directories whose manifest is present and valid (:meth:`is_complete`, :meth:`get_dir`). Every operation is
retried with backoff while its error is transient (a dropped connection, a 5xx; :mod:`.retry`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from stable_verl.artifacts.errors import ArtifactStoreError
from stable_verl.artifacts.redact import env_secrets, redact, redact_url, scrub, secret_values
from stable_verl.artifacts.retry import NO_RETRY, RetryPolicy, call_with_retries
from stable_verl.artifacts.transfer import ManifestedDirsMixin
from stable_verl.env import ARTIFACT_ROOT, s3_endpoint

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_ROOT = "./artifacts"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


class ArtifactStore(ManifestedDirsMixin):
    """Read/write artifacts under ``root`` (a local folder or ``s3://bucket/prefix``).

    ``retry``: how each operation on an object store is retried on a transient error (default
    :class:`RetryPolicy`'s); a local folder's operations are not retried.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._options = dict(storage_options or {})
        self._root = os.fspath(root)
        self.protocol = fsspec.core.split_protocol(self._root)[0] or "file"
        try:
            self.fs, path = fsspec.core.url_to_fs(self._root, **self._options)
        except Exception as exc:
            raise ArtifactStoreError(self._error_message("open", "", exc)) from None
        self.root_path = path.rstrip("/") or path
        self.is_local = isinstance(self.fs, LocalFileSystem)
        log.debug("opened %r", self)

    @classmethod
    def from_env(
        cls, root: str | None = None, *, endpoint_url: str | None = None, **storage_options: Any
    ) -> ArtifactStore:
        """Build a store from the environment.

        ``root`` defaults to ``$STABLE_VERL_ARTIFACT_ROOT`` or ``./artifacts``. For ``s3://`` roots the
        endpoint is ``endpoint_url`` or the first of ``$STABLE_VERL_S3_ENDPOINT``, ``$AWS_ENDPOINT_URL_S3``,
        ``$AWS_ENDPOINT_URL`` (MinIO, moto); credentials, profile and region are left to botocore's own
        chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws``), so the secret
        is never copied into the store's options.
        """
        root = root or ARTIFACT_ROOT.get() or DEFAULT_ROOT
        options = dict(storage_options)
        if fsspec.core.split_protocol(root)[0] in ("s3", "s3a"):
            endpoint = endpoint_url or s3_endpoint()
            if endpoint:
                options["client_kwargs"] = {**options.get("client_kwargs", {}), "endpoint_url": endpoint}
        return cls(root, options)

    # ----------------------------------------------------------------------------------------------- naming
    @property
    def endpoint_url(self) -> str | None:
        """The configured S3 endpoint (``None`` for AWS defaults and local stores)."""
        client_kwargs = self._options.get("client_kwargs") or {}
        return client_kwargs.get("endpoint_url") or self._options.get("endpoint_url")

    def _full(self, rel: str = "") -> str:
        rel = str(rel).strip("/")
        if not rel:
            return self.root_path
        if any(part in ("", ".", "..") for part in rel.split("/")):
            raise ValueError(f"invalid artifact path {rel!r}")
        return f"{self.root_path}/{rel}"

    def _rel(self, full: str) -> str:
        full = self.fs._strip_protocol(full).rstrip("/")
        return full[len(self.root_path) :].lstrip("/") if full.startswith(self.root_path) else full

    def uri(self, *parts: str) -> str:
        """Location of ``parts`` joined under the root: an absolute path locally, ``s3://...`` otherwise."""
        full = self._full("/".join(str(p).strip("/") for p in parts if str(p).strip("/")))
        return full if self.is_local else redact_url(f"{self.protocol}://{full}")

    def __repr__(self) -> str:
        return f"ArtifactStore(root={self.uri()!r}, storage_options={redact(self._options)!r})"

    def secrets(self) -> set[str]:
        """The values to scrub from anything shown or written: the store's own credentials and the values of the
        credential-like environment variables (:func:`~stable_verl.artifacts.redact.scrub`, ``redact(secrets=)``)."""
        return secret_values(self._options) | env_secrets()

    def _error_message(self, op: str, rel: str, exc: BaseException) -> str:
        where = redact_url(self._root.rstrip("/") + ("/" + rel if rel else ""))
        endpoint = f" (endpoint {redact_url(self.endpoint_url)})" if self.endpoint_url else ""
        detail = " ".join(str(exc).split())[:300] or "no details"
        return scrub(
            f"artifact store {op} failed for {where}{endpoint}: {type(exc).__name__}: {detail}", self.secrets()
        )

    @contextlib.contextmanager
    def _op(self, op: str, rel: str = "") -> Iterator[None]:
        """Re-raise backend errors as one-line, credential-free :class:`ArtifactStoreError` (not FileNotFound)."""
        try:
            yield
        except (FileNotFoundError, ArtifactStoreError):
            raise
        except Exception as exc:
            raise ArtifactStoreError(self._error_message(op, rel, exc)) from exc

    def _call(self, op: str, rel: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` as the operation ``op`` on ``rel``: retried (object stores) while its error is
        transient, then re-raised as by :meth:`_op`."""

        def once() -> T:
            with self._op(op, rel):
                return fn(*args, **kwargs)

        policy = NO_RETRY if self.is_local else self.retry  # a local error (or mismatch) repeats
        return call_with_retries(policy, op, lambda: self.uri(rel) if rel else self.uri(), once)

    # ------------------------------------------------------------------------------------- small objects
    def write_bytes(self, rel: str, data: bytes, *, content_type: str | None = None) -> str:
        """Write one object (locally via temp file + rename, so readers never see a partial file).

        ``content_type`` becomes the object's ``Content-Type`` on object stores (browsers render a page or an
        image served from a bucket only with the right one); local files ignore it.
        """
        full = self._full(rel)
        if self.is_local:
            with self._op("write", rel):
                os.makedirs(os.path.dirname(full), exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(full), prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, full)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        else:
            extra = {"ContentType": content_type} if content_type else {}
            self._call("write", rel, self.fs.pipe_file, full, data, **extra)
        log.debug("wrote %s (%d bytes)", self.uri(rel), len(data))
        return self.uri(rel)

    def read_bytes(self, rel: str) -> bytes:
        return self._call("read", rel, self.fs.cat_file, self._full(rel))

    def write_text(self, rel: str, text: str, *, content_type: str | None = None) -> str:
        """Write UTF-8 text; known secret values are scrubbed first."""
        return self.write_bytes(rel, scrub(text, self.secrets()).encode(), content_type=content_type)

    def read_head(self, rel: str, size: int) -> bytes:
        """The first ``size`` bytes of an object (all of it when it is shorter), without reading the rest."""
        return self._call("read", rel, self.fs.cat_file, self._full(rel), start=0, end=size)

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def write_json(self, rel: str, obj: Any, *, redact_keys: bool = True) -> str:
        """Write indented JSON; credential-like keys are masked (unless ``redact_keys=False``), secrets scrubbed."""
        clean = redact(obj, secrets=self.secrets()) if redact_keys else obj
        text = json.dumps(clean, indent=2, default=_json_default) + "\n"
        return self.write_bytes(rel, scrub(text, self.secrets()).encode())

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_yaml(self, rel: str, obj: Any) -> str:
        """Write a (resolved) config as YAML; accepts plain containers or OmegaConf objects."""
        import yaml
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            obj = OmegaConf.to_container(obj, resolve=True)
        clean = json.loads(json.dumps(redact(obj, secrets=self.secrets()), default=_json_default))
        return self.write_text(rel, yaml.safe_dump(clean, sort_keys=False))

    def write_jsonl(self, rel: str, rows: Iterable[Mapping[str, Any]]) -> str:
        """(Re)write a whole JSON-lines file; object stores cannot append, so callers rewrite."""
        secrets = self.secrets()
        lines = [json.dumps(redact(row, secrets=secrets), default=_json_default) for row in rows]
        return self.write_text(rel, "".join(line + "\n" for line in lines))

    def read_jsonl(self, rel: str) -> list[dict[str, Any]]:
        """Rows of a JSON-lines file; a truncated last line (a writer caught mid-write) is dropped."""
        lines = [line for line in self.read_text(rel).splitlines() if line.strip()]
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except ValueError:
                if i != len(lines) - 1:
                    raise
        return rows

    # ------------------------------------------------------------------------------------------ listing
    def exists(self, rel: str) -> bool:
        full = self._full(rel)

        def exists() -> bool:
            self.fs.invalidate_cache()
            return self.fs.exists(full)

        return self._call("stat", rel, exists)

    def ls(self, rel: str = "") -> list[str]:
        """Names of the direct children of ``rel`` (empty if it does not exist)."""
        full = self._full(rel)

        def ls() -> list[str]:
            self.fs.invalidate_cache()
            try:
                return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(full, detail=False))
            except FileNotFoundError:
                return []

        return self._call("list", rel, ls)

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching a glob pattern under the root."""

        def glob() -> list[str]:
            self.fs.invalidate_cache()
            return sorted(self._rel(p) for p in self.fs.glob(self._full(pattern)))

        return self._call("glob", pattern, glob)

    def cat_many(self, rels: list[str]) -> dict[str, bytes | None]:
        """Read several small objects at once (concurrently on S3); ``None`` for missing ones."""
        if not rels:
            return {}
        fulls = [self._full(r) for r in rels]

        def cat() -> dict[str, bytes | None]:
            found = self.fs.cat(fulls, on_error="return")
            out: dict[str, bytes | None] = {}
            for rel, full in zip(rels, fulls, strict=True):
                value = found.get(full) if isinstance(found, dict) else found
                if isinstance(value, FileNotFoundError) or value is None:
                    out[rel] = None
                elif isinstance(value, BaseException):
                    raise ArtifactStoreError(self._error_message("read", rel, value)) from value
                else:
                    out[rel] = value
            return out

        return self._call("read", rels[0], cat)

    def presign(self, rel: str, expires_s: int) -> str:
        """A presigned GET URL of the object ``rel``, valid for ``expires_s`` seconds (object stores only: it carries
        the access key id and a signature, never the secret)."""
        return self._call("sign", rel, self.fs.sign, self._full(rel), expiration=int(expires_s))

    def delete(self, rel: str, recursive: bool = False) -> None:
        full = self._full(rel)

        def rm() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(full, recursive=recursive)

        self._call("delete", rel, rm)

    # ------------------------------------------------------------------------------------------- health
    def check(self) -> None:
        """Verify the root is reachable and writable (write, read back and delete a probe object).

        Raises a one-line :class:`ArtifactStoreError` naming the root and endpoint, never the credentials.
        """
        probe = f".stable-verl-probe-{uuid.uuid4().hex[:12]}"
        once = copy.copy(self)  # a store that does not answer fails fast: botocore's own retries only
        once.retry = NO_RETRY
        try:
            once.write_bytes(probe, b"ok")
            if once.read_bytes(probe) != b"ok":
                raise OSError("probe object read back with different content")
            once.delete(probe)
        except ArtifactStoreError as exc:
            raise ArtifactStoreError(f"not reachable or not writable: {exc}") from exc.__cause__
        except Exception as exc:
            raise ArtifactStoreError(f"not reachable or not writable: {self._error_message('check', '', exc)}") from exc
        log.info("artifact store %s is reachable and writable", self.uri())
