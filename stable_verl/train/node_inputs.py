"""A stage's inputs on a cluster without a shared filesystem (``launcher.kind=ray_job``): store prefixes, node paths.

The command line of a Ray Job names node paths (``${oc.env:STABLE_VERL_NODE_DIR}/store/<store prefix>``, resolved
where verl reads its config); the job's environment lists the store prefixes behind them, which each node
materialises (:mod:`stable_verl.verl_ext.inputs`). This module decides both from what the flow has locally:

* the built assets (``workdir/assets/<spec hash>``: tiny model, tokenizer, task splits) go to
  ``inputs/assets/<spec hash>`` (:meth:`NodeInputs.publish`, once per store: the hash names a deterministic build);
* a user's model folder (local, a hub snapshot, or downloaded from ``s3://``) to ``inputs/models/<content key>``,
  also once per store;
* a seeded SFT training file (seed > 0) to ``inputs/assets/<spec hash>-seeded/<file stem>``;
* a user's reward file to ``inputs/code/<content key>/<file name>``, once per store: that one file, not its folder
  (verl imports it by path, as a module of its own, so its sibling files were never importable by it);
* an SFT checkpoint is in the store already (``runs/<id>/checkpoints/global_step_N``); only its HF folder is
  materialised (:func:`checkpoint_model`), as for each checkpoint an evaluation job scores;
* an evaluation's benchmark files to ``inputs/benchmarks/<content key>``, once per store.

A local run (``launcher.kind=local``) names the flow's own files directly: verl runs on this machine, where they are
already, so copying them would only cost time and disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.train.assets import Assets
from stable_verl.verl_ext.inputs import NODE_DIR_EXPR, StoreInput, inputs_env, node_expr, publish

ASSETS_PREFIX = "inputs/assets"
MODELS_PREFIX = "inputs/models"  # a user's model folder, by content address: uploaded once per store
CODE_PREFIX = "inputs/code"  # a user's reward file, by content address: uploaded once per store
BENCHMARKS_PREFIX = "inputs/benchmarks"  # an evaluation's benchmark files, by content address: once per store
ASSETS_MARKER = "assets.json"  # the local build's marker: names this machine's paths, so it stays here
HF_FOLDERS = ("huggingface", "actor/huggingface")  # an SFT checkpoint's HF weights; an RL checkpoint's


def node_checkpoint_root(run_id: str) -> PurePosixPath:
    """verl's checkpoint root of run ``run_id`` on whichever node saves it (as ``store_sync.node_path`` puts it)."""
    return PurePosixPath(NODE_DIR_EXPR, run_id, "checkpoints")


def assets_root(assets: Assets) -> Path:
    """The folder of the built assets (``workdir/assets/<spec hash>``)."""
    return assets.root


@dataclass
class NodeInputs:
    """The inputs of one Ray Job: what each node materialises, and what the flow uploads first."""

    inputs: list[StoreInput] = field(default_factory=list)
    uploads: dict[str, tuple[Path, list[str]]] = field(default_factory=dict)
    """Store prefix -> (local folder, files) that :meth:`publish` uploads unless the store has it."""

    def asset(self, assets: Assets, path: Path) -> PurePosixPath:
        """The node path of ``path``, a file or folder of the built assets."""
        root = assets_root(assets)
        inp = StoreInput(f"{ASSETS_PREFIX}/{root.name}")
        if inp not in self.inputs:
            self.inputs.append(inp)
            rels = [r for r in _files(root) if r != ASSETS_MARKER]
            self.uploads[inp.prefix] = (root, rels)
        return PurePosixPath(node_expr(inp, path.relative_to(root).as_posix()))

    def model(self, assets: Assets, key: str | None, in_store: str | None = None) -> PurePosixPath:
        """The node path of the base model: the built tiny model with the assets, a user's ``s3://`` model folder
        at its own prefix when it is in the store (``in_store``), else a user's folder as its own input
        ``inputs/models/<key>`` (``key``: its content address, :func:`~.model_source.model_key`)."""
        if assets.model_built or key is None:
            return self.asset(assets, assets.model_dir)
        inp = StoreInput(in_store if in_store is not None else f"{MODELS_PREFIX}/{key}")
        if inp not in self.inputs:
            self.inputs.append(inp)
            if in_store is None:  # published from the flow's copy (a local folder, a hub snapshot, an s3 download)
                self.uploads[inp.prefix] = (assets.model_dir, [r for r in _files(assets.model_dir) if not _hidden(r)])
        return PurePosixPath(node_expr(inp))

    def seeded(self, assets: Assets, path: Path) -> PurePosixPath:
        """The node path of a seeded copy of a split (:func:`~.assets.seeded_sft_file`), kept in the run's folder."""
        inp = StoreInput(f"{ASSETS_PREFIX}/{assets_root(assets).name}-seeded/{path.stem}")
        self.inputs.append(inp)
        self.uploads[inp.prefix] = (path.parent, [path.name])
        return PurePosixPath(node_expr(inp, path.name))

    def code(self, file: Path) -> PurePosixPath:
        """The node path of a user's code file (a reward ``.py``), its own input ``inputs/code/<key>`` holding that
        file under its own name (``key``: :func:`code_key`). ValueError if there is no such file."""
        inp = StoreInput(f"{CODE_PREFIX}/{code_key(file)}")
        if inp not in self.inputs:
            self.inputs.append(inp)
            self.uploads[inp.prefix] = (file.resolve().parent, [file.name])
        return PurePosixPath(node_expr(inp, file.name))

    def benchmarks(self, files: dict[str, Path]) -> dict[str, PurePosixPath]:
        """The node paths of benchmark files (name -> parquet file, all in one folder), one input
        ``inputs/benchmarks/<key>`` holding them under their own names (``key``: a hash of their names and bytes)."""
        folders = {f.parent for f in files.values()}
        if len(folders) != 1:
            raise ValueError(f"benchmark files must share one folder, got {sorted(map(str, folders))}")
        digest = hashlib.sha256()
        for f in sorted(files.values()):
            digest.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        inp = StoreInput(f"{BENCHMARKS_PREFIX}/{digest.hexdigest()[:16]}")
        if inp not in self.inputs:
            self.inputs.append(inp)
            self.uploads[inp.prefix] = (folders.pop(), sorted({f.name for f in files.values()}))
        return {name: PurePosixPath(node_expr(inp, f.name)) for name, f in files.items()}

    def checkpoint(self, prefix: str, folder: str) -> PurePosixPath:
        """The node path of ``folder`` of the checkpoint at ``prefix`` in the store (its HF model)."""
        inp = StoreInput(prefix, folder)
        self.inputs.append(inp)
        return PurePosixPath(node_expr(inp))

    def env(self) -> dict[str, str]:
        return inputs_env(self.inputs)

    def publish(self, store: ArtifactStore) -> list[str]:
        """Upload what the store lacks (manifest last); returns the prefixes uploaded now."""
        done = []
        for prefix, (local, rels) in self.uploads.items():
            if publish(store, local, rels, prefix):
                done.append(prefix)
        return done


def code_key(file: Path) -> str:
    """A short content address of a code file: a hash of its name and its bytes (an edited file is a new input; the
    same file in another folder is the same one)."""
    if not file.is_file():
        raise ValueError(f"reward file {file} does not exist")
    digest = hashlib.sha256(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _files(root: Path) -> list[str]:
    from stable_verl.artifacts.manifest import list_files

    return list_files(root) if root.is_dir() else []  # a plan's assets may not be built


def _hidden(rel: str) -> bool:
    """A dot file or folder (a hub download's ``.cache/``, a node's materialisation mark): not part of the model."""
    return any(part.startswith(".") for part in rel.split("/"))


def checkpoint_model(run: RunLayout, step: int) -> tuple[str, str]:
    """(store prefix, HF folder) of checkpoint ``step`` of ``run``, from its manifest: the folder that has
    ``config.json`` and safetensors weights. ValueError if none has (shards only: merge them locally first)."""
    prefix = run.checkpoint(step)
    manifest = run.store.read_manifest(prefix)
    if manifest is None:
        raise ValueError(f"{run.uri(prefix)} is not a complete checkpoint")
    paths = {f.path for f in manifest.files}
    for folder in HF_FOLDERS:
        weights = any(p.startswith(f"{folder}/") and p.endswith(".safetensors") for p in paths)
        if f"{folder}/config.json" in paths and weights:
            return prefix, folder
    raise ValueError(f"{run.uri(prefix)} has no HF model folder ({', '.join(HF_FOLDERS)}) with safetensors weights")


def model_config_dir(store: ArtifactStore, prefix: str, folder: str, local: Path) -> Path:
    """``folder`` of the model at ``prefix`` with just its ``config.json``, under ``local`` (for the flow's checks)."""
    store.get_dir(prefix, local, only=lambda rel: rel == f"{folder}/config.json")
    return local / folder
