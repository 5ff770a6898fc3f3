"""Browse a private bucket without making it public: a local copy of the pages whose data links are presigned.

``stable-verl site presign --store s3://bucket/prefix --out DIR [--expires SECONDS]`` copies every page of the
store's site into ``DIR``; links from page to page stay relative (they open the local copies), every other link
(plots, config, checkpoints, samples) becomes a presigned GET URL of its object, valid for ``--expires`` seconds.
Open ``DIR/index.html`` in a browser. The copy is written only to ``DIR``, never to the store: a presigned URL
carries the access key id (not the secret) and a signature, and stops working when it expires.
"""

from __future__ import annotations

import html
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stable_verl.artifacts import ArtifactStore
from stable_verl.site import MAX_PRESIGN_S, PAGE

#: The attributes the pages link through; the pages always quote them with double quotes (:mod:`.render`).
LINK_ATTR = re.compile(r'\b(href|src)="([^"]*)"')
DEFAULT_EXPIRES_S = MAX_PRESIGN_S


def page_paths(store: ArtifactStore) -> list[str]:
    """Relative paths of the site's pages in the store (the root index first)."""
    pages = [PAGE] if store.exists(PAGE) else []
    return pages + store.glob(f"runs/*/{PAGE}") + store.glob(f"comparisons/*/{PAGE}")


def resolve(page: str, link: str) -> tuple[str, str] | None:
    """``(object path relative to the root, fragment)`` of a relative link on ``page``; ``None`` for an absolute
    URL (``scheme:``, ``//host``, ``/path``) or a link that leaves the root."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or link.startswith("/"):
        return None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path))) if parts.path else page
    if target == ".." or target.startswith("../"):
        return None
    return target, parts.fragment


def presign_site(store: ArtifactStore, out_dir: str | Path, expires_s: int = DEFAULT_EXPIRES_S) -> list[Path]:
    """Write the presigned copy of every page into ``out_dir`` (see the module doc); returns the files written."""
    if store.is_local:
        raise ValueError(f"{store.uri()} is a local folder: open {store.uri(PAGE)} directly, no presigning needed")
    if not 1 <= expires_s <= MAX_PRESIGN_S:
        raise ValueError(f"--expires must be 1..{MAX_PRESIGN_S} seconds (7 days, the longest S3 allows)")
    pages = page_paths(store)
    if not pages:
        raise ValueError(f"no pages in {store.uri()}: run `stable-verl site build --store {store.uri()}` first")
    page_set = set(pages)
    signed: dict[str, str] = {}

    def rewrite(page: str, match: re.Match[str]) -> str:
        attr, value = match.group(1), html.unescape(match.group(2))
        found = resolve(page, value)
        if found is None:
            return match.group(0)
        target, _ = found
        if target in page_set:
            return match.group(0)  # page -> page: the local copies link to each other as the store's pages do
        if target not in signed:
            signed[target] = store.presign(target, expires_s)
        return f'{attr}="{html.escape(signed[target], quote=True)}"'

    written = []
    for page in pages:
        text = LINK_ATTR.sub(lambda m, page=page: rewrite(page, m), store.read_text(page))
        path = Path(out_dir) / page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
