"""Exceptions raised by the artifact store.

Every message is a single line that names the artifact (and the endpoint, for object stores) but never a
credential: the store scrubs its own secrets from messages before raising.
"""

from __future__ import annotations


class ArtifactStoreError(RuntimeError):
    """The store could not be reached, read or written (network, permissions, bad configuration)."""


class IncompleteArtifactError(ArtifactStoreError):
    """A directory has no valid ``_MANIFEST.json`` (its upload never finished) or misses a listed file."""


class ArtifactIntegrityError(ArtifactStoreError):
    """A downloaded file does not match the size or sha256 recorded in its manifest."""


class ManifestError(ValueError):
    """A ``_MANIFEST.json`` could not be parsed or is structurally invalid."""
