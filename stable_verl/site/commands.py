"""``stable-verl site build|presign``: the pages of an existing store, and a presigned local copy of them.

    stable-verl site build [--store URI]                      (re)write every page: old stores become browsable
    stable-verl site presign [--store URI] --out DIR [--expires SECONDS]
                                                              a local copy whose data links are presigned URLs

Registered on the main parser by :func:`add_site_commands`; errors follow the CLI's rules (bad input: a
``ValueError``, exit 2; an unreachable store: ``ArtifactStoreError``, exit 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from stable_verl.site import MAX_PRESIGN_S


def _store(args: argparse.Namespace):
    from stable_verl.site import store_reader

    return store_reader.open_store(args.store)


def cmd_site_build(args: argparse.Namespace) -> int:
    from stable_verl.site import build_site, page_url, store_reader

    store = _store(args)
    if not {"runs", "index", "comparisons"} & set(store.ls("")):  # a mistyped --store: write nothing there
        raise ValueError(f"no runs or comparisons in {store_reader.describe_store(store)}: nothing to build pages for")
    out = build_site(store)
    print(f"wrote {len(out.pages)} pages and {len(out.plots)} plots in {store_reader.describe_store(store)}")
    print(f"open {page_url(store, 'index.html')}")
    return 0


def cmd_site_presign(args: argparse.Namespace) -> int:
    from stable_verl.site.presign import presign_site

    written = presign_site(_store(args), args.out, args.expires)
    print(f"wrote {len(written)} pages with links valid for {args.expires} s; open {(args.out / 'index.html')}")
    return 0


def add_site_commands(sub: argparse._SubParsersAction, add_store: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``site build`` and ``site presign`` to the CLI's subparsers (``add_store`` adds ``--store``)."""
    site = sub.add_parser("site", help="static HTML pages of the artifact store (runs, comparisons, root index)")
    site_sub = site.add_subparsers(dest="site_command", required=True)
    build = site_sub.add_parser("build", help="(re)write every page of the store")
    add_store(build)
    build.set_defaults(func=cmd_site_build)
    presign = site_sub.add_parser("presign", help="a local copy of the pages whose data links are presigned URLs")
    presign.add_argument("--out", type=Path, required=True, help="local folder for the copy (open <out>/index.html)")
    presign.add_argument(
        "--expires", type=int, default=MAX_PRESIGN_S, help="seconds the links stay valid (default and max: 7 days)"
    )
    add_store(presign)
    presign.set_defaults(func=cmd_site_presign)
