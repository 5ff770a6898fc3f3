"""A stage's inputs (model, parquet files) from the artifact store onto the node that reads them.

On a cluster without a shared filesystem (``launcher.kind=ray_job``) the flow makes sure each input is a manifested
directory in the store (:func:`publish`: the built assets under ``inputs/assets/<spec hash>``, uploaded once,
manifest last; an SFT checkpoint is one already) and names it on the command line by its node path
(:func:`node_expr`: ``${oc.env:STABLE_VERL_NODE_DIR}/store/<store prefix>[/<folder>]``, which OmegaConf resolves
in the verl process that reads the config). The job's environment lists the inputs (``STABLE_VERL_INPUTS``, set by
:func:`inputs_env`; the store's root and endpoint as for :mod:`.store_sync`, no credentials). On each node the first
process that needs them (a verl Ray worker, through stable-verl's ``verl.plugins`` entry point; SFT's job
entrypoint before torchrun) materialises them (:func:`materialise`): under a file lock, download into a temporary
folder, check every file's size and sha256 against the manifest, rename into place. The rename is the completion
mark, so a present folder is complete; other processes wait on the lock and find it there.

This module imports no verl: the flow, the tests and the SFT job entrypoint use it too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from stable_verl.artifacts import ArtifactStore
from stable_verl.artifacts.manifest import Manifest
from stable_verl.env import INPUTS, NODE_DIR, S3_ENDPOINT, SYNC_ROOT
from stable_verl.verl_ext.store_sync import ENV_NODE_DIR

ENV_INPUTS = INPUTS.name
NODE_INPUTS = "store"  # under $STABLE_VERL_NODE_DIR: a mirror of the store prefixes the node has materialised
MARK = ".stable-verl-input.json"  # in a materialised folder: the manifest entries it was checked against
NODE_DIR_EXPR = "${oc.env:" + ENV_NODE_DIR + "}"
"""How a command line names this node's ``STABLE_VERL_NODE_DIR`` (OmegaConf's syntax, resolved where it is read)."""


class MissingNodeDir(RuntimeError):
    """A node that must materialise inputs sets no ``STABLE_VERL_NODE_DIR``."""


@dataclass(frozen=True)
class StoreInput:
    """A manifested directory of the store (``prefix``), or one folder of it (``folder``), as a stage input."""

    prefix: str
    folder: str = ""

    @property
    def node_rel(self) -> str:
        """Its path under a node's ``STABLE_VERL_NODE_DIR``."""
        return "/".join(p for p in (NODE_INPUTS, self.prefix, self.folder) if p)

    def wants(self, rel: str) -> bool:
        """Whether the manifest's file ``rel`` belongs to this input."""
        return not self.folder or rel.startswith(self.folder.rstrip("/") + "/")


def node_expr(inp: StoreInput, *rel: str) -> str:
    """``inp`` (or the file ``rel`` in it) as a command line names it: resolved on the node that reads it."""
    return "/".join([NODE_DIR_EXPR, inp.node_rel, *rel])


def resolve_node_paths(args: Iterable[str], node_dir: str | os.PathLike[str]) -> list[str]:
    """``args`` with every :data:`NODE_DIR_EXPR` replaced by ``node_dir``: a command's node paths on this node, for a
    program that reads no OmegaConf config (the evaluation worker)."""
    return [a.replace(NODE_DIR_EXPR, os.fspath(node_dir)) for a in args]


def inputs_env(inputs: Iterable[StoreInput]) -> dict[str, str]:
    """The job's variable that lists ``inputs`` (to be materialised on each node that runs verl)."""
    specs = sorted({(i.prefix, i.folder) for i in inputs})
    return {ENV_INPUTS: json.dumps([{"prefix": p, "folder": f} for p, f in specs])} if specs else {}


def parse_inputs(value: str) -> list[StoreInput]:
    return [StoreInput(item["prefix"], item.get("folder", "")) for item in json.loads(value)]


def publish(store: ArtifactStore, local_root: str | os.PathLike[str], rels: Iterable[str], prefix: str) -> bool:
    """Upload the files ``rels`` of ``local_root`` to ``prefix`` with the manifest last, unless ``prefix`` is
    complete already (its manifest exists: uploaded once, by whoever came first). Returns whether it uploaded."""
    if store.read_manifest(prefix) is not None:
        return False
    entries = store.put_files(local_root, prefix, sorted(rels))
    store.check_uploaded(prefix, entries)
    store.write_manifest(prefix, Manifest(files=entries, metadata={"kind": "stage inputs"}))
    return True


def materialise(store: ArtifactStore, inp: StoreInput, node_dir: str | os.PathLike[str]) -> Path:
    """``inp`` on this node (``node_dir/inputs/...``), downloaded and verified unless already there (see the module
    docstring). Raises :class:`~stable_verl.artifacts.errors.ArtifactIntegrityError` for a file whose size or sha256
    differs from the manifest (nothing is left in place), ``IncompleteArtifactError`` for a prefix without one."""
    dest = Path(node_dir) / inp.node_rel
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{dest}.lock"):
        if dest.is_dir():  # another process finished it while this one waited
            return dest
        for stale in dest.parent.glob(f".{dest.name}-*"):  # left by a process killed mid-download (lock held)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            manifest = store.get_dir(inp.prefix, tmp, only=inp.wants)  # size + sha256 of each file checked
            got = tmp / inp.folder if inp.folder else tmp
            if not got.is_dir():
                raise FileNotFoundError(f"{store.uri(inp.prefix)} has no files under {inp.folder!r}")
            entries = [e.to_dict() for e in manifest.files if inp.wants(e.path)]
            (got / MARK).write_text(json.dumps({"source": inp.prefix, "files": entries}, indent=1))
            os.replace(got, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def materialise_from_env(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The inputs the environment lists (``STABLE_VERL_INPUTS``), on this node; none listed: nothing to do."""
    value = INPUTS.get(environ)
    if not value:
        return []
    node_dir = NODE_DIR.get(environ)
    if not node_dir:
        raise MissingNodeDir(
            f"{ENV_INPUTS} lists stage inputs, but this node sets no {ENV_NODE_DIR} to put them in: "
            f"start it with {ENV_NODE_DIR}=<local folder> ray start ... (docs/how-to/cluster.md)"
        )
    root = SYNC_ROOT.get(environ)
    if root is None:
        raise KeyError(SYNC_ROOT.name)  # stable-verl sets it beside STABLE_VERL_INPUTS (sync_env)
    store = ArtifactStore.from_env(root, endpoint_url=S3_ENDPOINT.get(environ))
    return [materialise(store, inp, node_dir) for inp in parse_inputs(value)]
